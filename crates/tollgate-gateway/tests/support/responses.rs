//! An OpenAI-shaped server that serves the Responses API (`POST /v1/responses`) for the gateway's
//! black-box tests: plain axum, no tollgate code. It records each call's body as it arrived and
//! answers with the next scripted body byte for byte (a Response object, or an event stream).
//!
//! And what OpenAI's and Anthropic's APIs answer, written as they write it: a Response object and
//! its typed event stream (text, or a function call), and the Anthropic message and events that
//! say the same.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

/// One scripted answer: a Response object's JSON, or an event stream's text.
#[derive(Debug, Clone)]
pub enum ResponsesReply {
    Json(String),
    Events(String),
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<ResponsesReply>>,
    received: Mutex<Vec<Bytes>>,
}

/// The running server.
#[derive(Clone)]
pub struct ResponsesUpstream {
    pub address: SocketAddr,
    script: Arc<Script>,
}

#[allow(dead_code)] // each test binary uses some
impl ResponsesUpstream {
    pub async fn start() -> Self {
        let script = Arc::new(Script::default());
        let app = Router::new()
            .route("/v1/responses", post(responses))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { address, script }
    }

    /// The base URL a provider section points at.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    pub fn push(&self, reply: ResponsesReply) {
        self.script.replies.lock().unwrap().push_back(reply);
    }

    /// The bodies received, in order, as JSON.
    pub fn bodies(&self) -> Vec<Value> {
        let received = self.script.received.lock().unwrap();
        received
            .iter()
            .map(|body| serde_json::from_slice(body).unwrap())
            .collect()
    }
}

async fn responses(State(script): State<Arc<Script>>, body: Bytes) -> Response {
    script.received.lock().unwrap().push(body);
    let reply = script.replies.lock().unwrap().pop_front();
    match reply {
        Some(ResponsesReply::Json(text)) => {
            ([("content-type", "application/json")], text).into_response()
        }
        Some(ResponsesReply::Events(text)) => {
            ([("content-type", "text/event-stream; charset=utf-8")], text).into_response()
        }
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no reply scripted").into_response(),
    }
}

/// The function tool the tests offer: `get_weather(city)`.
pub fn weather_tool() -> Value {
    json!({
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": { "city": { "type": "string" } },
            "required": ["city"],
            "additionalProperties": false
        },
        "strict": true
    })
}

/// A Response object as OpenAI writes it, with `output` and `status`.
pub fn response_object(id: &str, status: &str, output: Value, tools: Value) -> Value {
    let usage = if status == "completed" {
        json!({
            "input_tokens": 36,
            "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens": 12,
            "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": 48
        })
    } else {
        Value::Null
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": 1_765_000_000,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "max_tool_calls": null,
        "model": "gpt-4.1-2025-04-14",
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "prompt_cache_key": null,
        "reasoning": { "effort": null, "summary": null },
        "safety_identifier": null,
        "service_tier": "default",
        "store": true,
        "temperature": 1.0,
        "text": { "format": { "type": "text" }, "verbosity": "medium" },
        "tool_choice": "auto",
        "tools": tools,
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {}
    })
}

fn message_item(text: &str, status: &str) -> Value {
    let content = if status == "completed" {
        json!([{ "type": "output_text", "annotations": [], "logprobs": [], "text": text }])
    } else {
        json!([])
    };
    json!({ "id": "msg_68f1a2b3c4d5e6f7", "type": "message", "status": status, "content": content, "role": "assistant" })
}

fn call_item(arguments: &str, status: &str) -> Value {
    json!({
        "id": "fc_68f1a2b3c4d5e6f8", "type": "function_call", "status": status,
        "arguments": arguments, "call_id": "call_Xy12", "name": "get_weather"
    })
}

/// OpenAI's whole answer: `text`.
pub fn openai_text(id: &str, text: &str) -> String {
    response_object(
        id,
        "completed",
        json!([message_item(text, "completed")]),
        json!([]),
    )
    .to_string()
}

/// OpenAI's whole answer: a call of `get_weather` with `arguments`.
pub fn openai_call(id: &str, arguments: &str) -> String {
    let output = json!([call_item(arguments, "completed")]);
    response_object(id, "completed", output, json!([weather_tool()])).to_string()
}

/// Events as an event stream: `event:` its type, `data:` it, each with its sequence number.
fn stream(events: Vec<Value>) -> String {
    let mut text = String::new();
    for (n, mut event) in events.into_iter().enumerate() {
        event["sequence_number"] = json!(n);
        let kind = event["type"].as_str().unwrap().to_owned();
        text.push_str(&format!("event: {kind}\ndata: {event}\n\n"));
    }
    text
}

/// OpenAI's stream of `pieces` of text.
pub fn openai_text_events(id: &str, pieces: &[&str]) -> String {
    let text: String = pieces.concat();
    let item_id = "msg_68f1a2b3c4d5e6f7";
    let started = response_object(id, "in_progress", json!([]), json!([]));
    let mut events = vec![
        json!({ "type": "response.created", "response": started }),
        json!({ "type": "response.in_progress", "response": started }),
        json!({ "type": "response.output_item.added", "output_index": 0, "item": message_item("", "in_progress") }),
        json!({ "type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0,
                "part": { "type": "output_text", "annotations": [], "logprobs": [], "text": "" } }),
    ];
    for piece in pieces {
        events.push(json!({ "type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
                            "content_index": 0, "delta": piece, "logprobs": [], "obfuscation": "kQ3x" }));
    }
    events.extend([
        json!({ "type": "response.output_text.done", "item_id": item_id, "output_index": 0, "content_index": 0,
                "text": text, "logprobs": [] }),
        json!({ "type": "response.content_part.done", "item_id": item_id, "output_index": 0, "content_index": 0,
                "part": { "type": "output_text", "annotations": [], "logprobs": [], "text": text } }),
        json!({ "type": "response.output_item.done", "output_index": 0, "item": message_item(&text, "completed") }),
        json!({ "type": "response.completed",
                "response": response_object(id, "completed", json!([message_item(&text, "completed")]), json!([])) }),
    ]);
    stream(events)
}

/// OpenAI's stream of a call of `get_weather`, its arguments in `pieces`.
pub fn openai_call_events(id: &str, pieces: &[&str]) -> String {
    let arguments: String = pieces.concat();
    let item_id = "fc_68f1a2b3c4d5e6f8";
    let started = response_object(id, "in_progress", json!([]), json!([weather_tool()]));
    let mut events = vec![
        json!({ "type": "response.created", "response": started }),
        json!({ "type": "response.in_progress", "response": started }),
        json!({ "type": "response.output_item.added", "output_index": 0, "item": call_item("", "in_progress") }),
    ];
    for piece in pieces {
        events.push(
            json!({ "type": "response.function_call_arguments.delta", "item_id": item_id,
                            "output_index": 0, "delta": piece, "obfuscation": "Zp" }),
        );
    }
    let done = call_item(&arguments, "completed");
    events.extend([
        json!({ "type": "response.function_call_arguments.done", "item_id": item_id, "output_index": 0,
                "arguments": arguments }),
        json!({ "type": "response.output_item.done", "output_index": 0, "item": done }),
        json!({ "type": "response.completed",
                "response": response_object(id, "completed", json!([done]), json!([weather_tool()])) }),
    ]);
    stream(events)
}

/// Anthropic's whole message: `text`.
pub fn claude_text(text: &str) -> String {
    json!({
        "id": "msg_01ABCDEFGHJKLMNPQRSTUVWX", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{ "type": "text", "text": text }],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": { "input_tokens": 36, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 12 }
    })
    .to_string()
}

/// Anthropic's whole message: a call of `get_weather` with `input`.
pub fn claude_call(input: Value) -> String {
    json!({
        "id": "msg_01ABCDEFGHJKLMNPQRSTUVWY", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{ "type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": input }],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": { "input_tokens": 36, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 12 }
    })
    .to_string()
}

fn anthropic_stream(events: Vec<Value>) -> String {
    let mut text = String::new();
    for event in events {
        let kind = event["type"].as_str().unwrap().to_owned();
        text.push_str(&format!("event: {kind}\ndata: {event}\n\n"));
    }
    text
}

fn message_start() -> Value {
    json!({ "type": "message_start", "message": {
        "id": "msg_01ABCDEFGHJKLMNPQRSTUVWZ", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": { "input_tokens": 36, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1 } } })
}

/// Anthropic's stream of `pieces` of text.
pub fn claude_text_events(pieces: &[&str]) -> String {
    let mut events = vec![
        message_start(),
        json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        json!({ "type": "ping" }),
    ];
    for piece in pieces {
        events.push(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": piece } }));
    }
    events.extend([
        json!({ "type": "content_block_stop", "index": 0 }),
        json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null }, "usage": { "output_tokens": 12 } }),
        json!({ "type": "message_stop" }),
    ]);
    anthropic_stream(events)
}

/// Anthropic's stream of a call of `get_weather`, its input's JSON in `pieces`.
pub fn claude_call_events(pieces: &[&str]) -> String {
    let mut events = vec![
        message_start(),
        json!({ "type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {} } }),
    ];
    for piece in pieces {
        events.push(json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "input_json_delta", "partial_json": piece } }));
    }
    events.extend([
        json!({ "type": "content_block_stop", "index": 0 }),
        json!({ "type": "message_delta", "delta": { "stop_reason": "tool_use", "stop_sequence": null }, "usage": { "output_tokens": 12 } }),
        json!({ "type": "message_stop" }),
    ]);
    anthropic_stream(events)
}

//! A whole Responses answer: written from an [`LlmResponse`] for a caller (the door's side), read
//! from an upstream's body into one (the client's side). The Response object is written straight
//! into bytes: what the caller asked for is echoed as it came, without a second parse.

use std::{
    borrow::Cow,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use serde_json::Value;
use tollgate_core::{
    AssistantMessage, Choice, FinishReason, LlmResponse, ToolCall, Usage, whole_number,
};

use super::{ResponsesBody, item_id};

/// One output item of a Response.
#[derive(Debug, Clone)]
pub(super) enum Output<'a> {
    /// Reasoning, written as its summary.
    Reasoning(Cow<'a, str>),
    /// The answer's text, as one `output_text` part.
    Message(Cow<'a, str>),
    /// A function call.
    Call {
        call_id: Cow<'a, str>,
        name: Cow<'a, str>,
        arguments: Cow<'a, str>,
    },
}

impl Output<'_> {
    pub(super) const fn prefix(&self) -> &'static str {
        match self {
            Self::Reasoning(_) => "rs",
            Self::Message(_) => "msg",
            Self::Call { .. } => "fc",
        }
    }
}

#[derive(Serialize)]
struct Text<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    annotations: [(); 0],
    logprobs: [(); 0],
    text: &'a str,
}

impl<'a> OutputText<'a> {
    pub(super) const fn new(text: &'a str) -> Self {
        Self {
            kind: "output_text",
            annotations: [],
            logprobs: [],
            text,
        }
    }
}

/// Writes `value` as JSON.
pub(super) fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(&mut *out, value).expect("a JSON value serializes");
}

/// The `output_text` part of `text`.
pub(super) fn write_output_text(out: &mut Vec<u8>, text: &str) {
    json(out, &OutputText::new(text));
}

/// The `summary_text` part of `text`.
pub(super) fn write_summary_text(out: &mut Vec<u8>, text: &str) {
    json(
        out,
        &Text {
            kind: "summary_text",
            text,
        },
    );
}

/// Output item `index` of response `id`, `status` `completed` (whole) or `in_progress` (just
/// added to a stream: no content yet).
pub(super) fn write_item(out: &mut Vec<u8>, id: &str, index: usize, item: &Output<'_>, done: bool) {
    out.extend_from_slice(b"{\"id\":");
    json(out, &item_id(item.prefix(), id, index));
    let status: &[u8] = if done {
        b"\"completed\""
    } else {
        b"\"in_progress\""
    };
    match item {
        Output::Reasoning(text) => {
            out.extend_from_slice(b",\"type\":\"reasoning\",\"summary\":[");
            if done && !text.is_empty() {
                write_summary_text(out, text);
            }
            out.push(b']');
        }
        Output::Message(text) => {
            out.extend_from_slice(b",\"type\":\"message\",\"status\":");
            out.extend_from_slice(status);
            out.extend_from_slice(b",\"content\":[");
            if done {
                write_output_text(out, text);
            }
            out.extend_from_slice(b"],\"role\":\"assistant\"");
        }
        Output::Call {
            call_id,
            name,
            arguments,
        } => {
            out.extend_from_slice(b",\"type\":\"function_call\",\"status\":");
            out.extend_from_slice(status);
            out.extend_from_slice(b",\"arguments\":");
            json(out, if done { &**arguments } else { "" });
            out.extend_from_slice(b",\"call_id\":");
            json(out, &**call_id);
            out.extend_from_slice(b",\"name\":");
            json(out, &**name);
        }
    }
    out.push(b'}');
}

/// What a Response object says besides its output and what the call asked.
pub(super) struct Said<'a> {
    pub(super) id: &'a str,
    pub(super) created_at: u64,
    pub(super) model: &'a str,
    /// `completed`, `incomplete`, `in_progress` or `failed`.
    pub(super) status: &'a str,
    pub(super) incomplete: Option<&'a str>,
    /// `error` (`{code, message}`), for a failed response.
    pub(super) error: Option<&'a Value>,
    pub(super) usage: Option<&'a Usage>,
}

/// Seconds since the epoch, for `created_at`.
pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_secs())
}

/// `status` and `incomplete_details.reason` for a finish.
pub(super) fn status_of(finish: Option<&FinishReason>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some(FinishReason::Length) => ("incomplete", Some("max_output_tokens")),
        Some(FinishReason::ContentFilter) => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// Writes the Response object: `said`, `items` and what `asked` asked for, echoed as OpenAI
/// echoes it (with OpenAI's defaults for what the call left out).
pub(super) fn write_response(
    out: &mut Vec<u8>,
    said: &Said<'_>,
    asked: &ResponsesBody,
    items: &[Output<'_>],
) {
    let echo = |out: &mut Vec<u8>, name: &str, check: fn(&[u8]) -> bool, default: &[u8]| {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match asked.field(name).filter(|raw| check(raw)) {
            Some(raw) => out.extend_from_slice(raw),
            None => out.extend_from_slice(default),
        }
    };
    out.extend_from_slice(b"{\"id\":");
    json(out, said.id);
    out.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
    json(out, &said.created_at);
    out.extend_from_slice(b",\"status\":");
    json(out, said.status);
    out.extend_from_slice(b",\"background\":false,\"error\":");
    match said.error {
        Some(error) => json(out, error),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"incomplete_details\":");
    match said.incomplete {
        Some(reason) => {
            out.extend_from_slice(b"{\"reason\":");
            json(out, reason);
            out.push(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    echo(out, "instructions", is_string, b"null");
    out.extend_from_slice(b",\"max_output_tokens\":");
    match asked
        .field("max_output_tokens")
        .and_then(|raw| serde_json::from_slice::<Value>(raw).ok())
        .and_then(|value| whole_number(&value, 1).ok())
    {
        Some(max) => json(out, &max),
        None => out.extend_from_slice(b"null"),
    }
    echo(out, "max_tool_calls", is_count, b"null");
    out.extend_from_slice(b",\"model\":");
    json(out, said.model);
    out.extend_from_slice(b",\"output\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_item(out, said.id, index, item, true);
    }
    out.push(b']');
    echo(out, "parallel_tool_calls", is_bool, b"true");
    echo(out, "previous_response_id", is_string, b"null");
    echo(out, "prompt_cache_key", is_string, b"null");
    echo(
        out,
        "reasoning",
        is_object,
        b"{\"effort\":null,\"summary\":null}",
    );
    echo(out, "safety_identifier", is_string, b"null");
    echo(out, "service_tier", is_service_tier, b"\"default\"");
    out.extend_from_slice(b",\"store\":");
    json(out, &asked.store());
    echo(out, "temperature", is_number, b"1.0");
    echo(
        out,
        "text",
        is_object,
        b"{\"format\":{\"type\":\"text\"},\"verbosity\":\"medium\"}",
    );
    echo(out, "tool_choice", not_null, b"\"auto\"");
    echo(out, "tools", is_array, b"[]");
    echo(out, "top_logprobs", is_count, b"0");
    echo(out, "top_p", is_number, b"1.0");
    echo(out, "truncation", is_truncation, b"\"disabled\"");
    out.extend_from_slice(b",\"usage\":");
    match said.usage {
        Some(usage) => write_usage(out, usage),
        None => out.extend_from_slice(b"null"),
    }
    echo(out, "user", is_string, b"null");
    echo(out, "metadata", is_object, b"{}");
    out.push(b'}');
}

fn is_string(raw: &[u8]) -> bool {
    raw.first() == Some(&b'"')
}

fn is_object(raw: &[u8]) -> bool {
    raw.first() == Some(&b'{')
}

fn is_array(raw: &[u8]) -> bool {
    raw.first() == Some(&b'[')
}

fn is_bool(raw: &[u8]) -> bool {
    raw == b"true" || raw == b"false"
}

fn not_null(raw: &[u8]) -> bool {
    raw != b"null"
}

fn is_number(raw: &[u8]) -> bool {
    raw.first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
}

fn is_count(raw: &[u8]) -> bool {
    !raw.is_empty() && raw.iter().all(u8::is_ascii_digit)
}

fn is_truncation(raw: &[u8]) -> bool {
    raw == b"\"auto\"" || raw == b"\"disabled\""
}

fn is_service_tier(raw: &[u8]) -> bool {
    [
        &b"\"auto\""[..],
        b"\"default\"",
        b"\"flex\"",
        b"\"scale\"",
        b"\"priority\"",
    ]
    .contains(&raw)
}

/// Usage in the Responses API's form.
pub(super) fn write_usage(out: &mut Vec<u8>, usage: &Usage) {
    #[derive(Serialize)]
    struct InputDetails {
        cached_tokens: u64,
        cache_write_tokens: u64,
    }
    #[derive(Serialize)]
    struct OutputDetails {
        reasoning_tokens: u64,
    }
    #[derive(Serialize)]
    struct Wire {
        input_tokens: u64,
        input_tokens_details: InputDetails,
        output_tokens: u64,
        output_tokens_details: OutputDetails,
        total_tokens: u64,
    }
    json(
        out,
        &Wire {
            input_tokens: usage.input_tokens,
            input_tokens_details: InputDetails {
                cached_tokens: usage.cached_input_tokens,
                cache_write_tokens: usage.cache_write_tokens,
            },
            output_tokens: usage.output_tokens,
            output_tokens_details: OutputDetails {
                reasoning_tokens: usage.reasoning_tokens,
            },
            total_tokens: usage.input_tokens.saturating_add(usage.output_tokens),
        },
    );
}

/// The first choice's output items: its reasoning, its text (or refusal), its tool calls.
fn outputs(answer: &LlmResponse) -> Vec<Output<'_>> {
    let mut items = Vec::new();
    let Some(message) = answer.choices.first().map(|c| &c.message) else {
        return items;
    };
    if let Some(reasoning) = message.reasoning.as_deref().filter(|r| !r.is_empty()) {
        items.push(Output::Reasoning(reasoning.into()));
    }
    let text = message.content.as_deref().or(message.refusal.as_deref());
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        items.push(Output::Message(text.into()));
    }
    for call in &message.tool_calls {
        items.push(Output::Call {
            call_id: (&*call.id).into(),
            name: (&*call.function.name).into(),
            arguments: (&*call.function.arguments).into(),
        });
    }
    items
}

/// The Response object (JSON) for the stack's `answer`, under `id` (`resp_...`), echoing what
/// the call `asked` for as OpenAI does: `status` `completed`, or `incomplete` when the output
/// bound (or a content filter) stopped it; output items named after `id`; usage in this API's
/// form. Only the first choice is written: the API has one.
///
/// ```
/// use tollgate_core::{FinishReason, LlmResponse, Usage};
/// use tollgate_wire::openai::responses::{ResponsesBody, decode_request, encode_answer};
///
/// let request = decode_request(bytes::Bytes::from_static(br#"{"model": "m", "input": "Hi", "max_output_tokens": 5}"#), &Default::default()).unwrap();
/// let answer = LlmResponse::new("m-1", "Hello th").with_finish_reason(FinishReason::Length).with_usage(Usage::new(3, 5));
/// let body = encode_answer(&answer, "resp_7", request.extensions.get::<ResponsesBody>().unwrap());
/// let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
/// assert_eq!(body["status"], "incomplete");
/// assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
/// assert_eq!(body["output"][0]["id"], "msg_7_0");
/// assert_eq!(body["usage"]["total_tokens"], 8);
/// ```
pub fn encode_answer(answer: &LlmResponse, id: &str, asked: &ResponsesBody) -> Vec<u8> {
    let items = outputs(answer);
    let (status, incomplete) = status_of(answer.finish_reason());
    let said = Said {
        id,
        created_at: now(),
        model: &answer.model,
        status,
        incomplete,
        error: None,
        usage: Some(&answer.usage),
    };
    let mut out = Vec::with_capacity(1024 + answer.text_len());
    write_response(&mut out, &said, asked, &items);
    out
}

/// Reads an upstream's whole Response, with `asked` as its model when it names none: `message`
/// items' `output_text` joined as the content (`refusal` parts as the refusal), `function_call`
/// items as tool calls (their `call_id` as the call's id), `reasoning` items' summaries and text
/// as the reasoning, `status` as the finish reason (`incomplete` for `max_output_tokens` as
/// `length`; tool calls as `tool_calls`), usage with cached and reasoning tokens, and the
/// response's `id`. Items of built-in tools are not in the answer the stack reads; a caller in
/// this API gets them all the same, from the answer as it came.
///
/// # Errors
///
/// Why it is not a Response: not its JSON, or a failed one (with what it said).
pub fn decode_answer(body: &[u8], asked: &str) -> Result<LlmResponse, String> {
    #[derive(serde::Deserialize)]
    struct Wire {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        model: Option<String>,
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        incomplete_details: Option<Value>,
        #[serde(default)]
        error: Option<Value>,
        #[serde(default)]
        output: Vec<Value>,
        #[serde(default)]
        usage: Option<Value>,
    }
    let wire: Wire = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if wire.status.as_deref() == Some("failed") {
        let said = wire
            .error
            .as_ref()
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(format!("the response failed: {said}"));
    }
    let mut message = AssistantMessage::default();
    for item in &wire.output {
        read_item(item, &mut message);
    }
    let finish = finish_of(
        wire.status.as_deref(),
        wire.incomplete_details.as_ref(),
        !message.tool_calls.is_empty(),
    );
    let mut choice = Choice::new(0, message);
    choice.finish_reason = finish;
    let usage = wire.usage.as_ref().map(usage_of).unwrap_or_default();
    let mut answer =
        LlmResponse::with_choices(wire.model.unwrap_or_else(|| asked.to_owned()), vec![choice])
            .with_usage(usage);
    if let Some(id) = wire.id {
        answer.extra.make_mut().insert("id".into(), id.into());
    }
    Ok(answer)
}

/// One output item, added to the message the stack reads.
pub(super) fn read_item(item: &Value, message: &mut AssistantMessage) {
    let string =
        |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let parts = |key: &str| {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    match item.get("type").and_then(Value::as_str) {
        Some("message") => {
            for part in parts("content") {
                match part.get("type").and_then(Value::as_str) {
                    Some("output_text") => message
                        .content
                        .get_or_insert_default()
                        .push_str(&string(part, "text").unwrap_or_default()),
                    Some("refusal") => message
                        .refusal
                        .get_or_insert_default()
                        .push_str(&string(part, "refusal").unwrap_or_default()),
                    _ => {}
                }
            }
        }
        Some("function_call") => message.tool_calls.push(ToolCall::function(
            string(item, "call_id").unwrap_or_default(),
            string(item, "name").unwrap_or_default(),
            string(item, "arguments").unwrap_or_default(),
        )),
        Some("reasoning") => {
            for part in parts("summary").chain(parts("content")) {
                if let Some(text) = string(part, "text") {
                    message.reasoning.get_or_insert_default().push_str(&text);
                }
            }
        }
        _ => {}
    }
}

/// The finish a Response's `status` says.
pub(super) fn finish_of(
    status: Option<&str>,
    incomplete: Option<&Value>,
    calls: bool,
) -> Option<FinishReason> {
    match status {
        Some("incomplete") => {
            let reason = incomplete
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str);
            Some(match reason {
                Some("content_filter") => FinishReason::ContentFilter,
                Some("max_output_tokens") | None => FinishReason::Length,
                Some(other) => FinishReason::Other(other.into()),
            })
        }
        Some("completed") if calls => Some(FinishReason::ToolCalls),
        Some("completed") => Some(FinishReason::Stop),
        Some(other) => Some(FinishReason::Other(other.into())),
        None => None,
    }
}

/// A Responses `usage` object as tollgate's.
pub(super) fn usage_of(usage: &Value) -> Usage {
    let number = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    Usage::new(number("/input_tokens"), number("/output_tokens"))
        .with_cached_input(number("/input_tokens_details/cached_tokens"))
        .with_reasoning(number("/output_tokens_details/reasoning_tokens"))
}

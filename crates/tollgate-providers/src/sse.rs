//! Server-sent events from a provider, decoded into typed [`StreamEvent`]s: OpenAI's
//! `chat.completion.chunk`s and Anthropic's Messages events.

use std::collections::VecDeque;

use bytes::BytesMut;
use serde_json::Value;
use tollgate_core::{
    ErrorKind, FinishReason, JsonMap, LlmError, Usage,
    stream::{StreamEvent, ToolCallDelta},
};

use crate::failure::stream_error;

/// Which provider's event format a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
}

/// Server-sent events as they arrive, decoded into [`StreamEvent`]s: bytes go in with
/// [`feed`](Self::feed), events come out of [`next`](Self::next), whatever the chunking.
pub(crate) struct Decoder {
    dialect: Dialect,
    provider: String,
    buffer: BytesMut,
    /// How far `buffer` has been looked through for the end of an event.
    scan: Scan,
    /// The largest event taken, in bytes.
    max_event: usize,
    pending: VecDeque<Result<StreamEvent, LlmError>>,
    done: bool,
    usage: Usage,
    said: Said,
}

/// What the stream has said so far that shapes how the next event is read.
#[derive(Default)]
struct Said {
    /// The model and the answer's fields go out once: OpenAI repeats them in every chunk, and
    /// they are not even read again once sent.
    model: bool,
    meta: bool,
    /// Anthropic: which content block opened which tool call.
    blocks: Vec<(u64, u32)>,
    /// OpenAI: the answers (choices) the stream spoke of, and those it finished.
    choices: Vec<u32>,
    finished: Vec<u32>,
}

impl Decoder {
    pub(crate) fn new(dialect: Dialect, provider: &str, max_event: usize) -> Self {
        Self {
            dialect,
            provider: provider.to_owned(),
            buffer: BytesMut::new(),
            scan: Scan::default(),
            max_event,
            pending: VecDeque::new(),
            done: false,
            usage: Usage::default(),
            said: Said::default(),
        }
    }

    /// Adds bytes read from the body.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The body ended: whatever is left is the last event, and a stream that has not said its
    /// proper end by then is cut short.
    pub(crate) fn end(&mut self) {
        let rest = std::mem::take(&mut self.buffer);
        if !self.done && !rest.iter().all(u8::is_ascii_whitespace) {
            self.decode(&rest);
        }
        if !self.done {
            let end = match self.dialect {
                Dialect::OpenAi => "[DONE]",
                Dialect::Anthropic => "message_stop",
            };
            self.fail(cut_short(
                &self.provider,
                &format!("the upstream closed the stream before its end ({end})"),
            ));
        }
        self.done = true;
    }

    /// The stream broke: nothing more is decoded.
    pub(crate) fn stop(&mut self) {
        self.done = true;
        self.pending.clear();
    }

    /// Whether the stream has ended and every event was handed out.
    pub(crate) fn is_done(&self) -> bool {
        self.done && self.pending.is_empty()
    }

    /// The next event, or `None` until more bytes come (or once it is done).
    pub(crate) fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let Some(raw) = take_event(&mut self.buffer, &mut self.scan) else {
                if self.buffer.len() > self.max_event {
                    let most = self.max_event;
                    self.buffer = BytesMut::new();
                    self.fail(LlmError::new(
                        ErrorKind::Server,
                        format!(
                            "{}: the upstream sent a stream event over the limit of {most} bytes",
                            self.provider
                        ),
                    ));
                    continue;
                }
                return None;
            };
            self.decode(&raw);
        }
    }

    fn decode(&mut self, raw: &[u8]) {
        match parse(self.dialect, raw, &self.provider, &mut self.said) {
            Ok(Parsed::Events(events)) => self.queue(events),
            Ok(Parsed::Done) => {
                self.done = true;
                let said = &self.said;
                let unfinished = said.choices.iter().any(|c| !said.finished.contains(c));
                if self.dialect == Dialect::OpenAi && (unfinished || said.finished.is_empty()) {
                    self.pending.push_back(Err(cut_short(
                        &self.provider,
                        "the upstream ended the stream without a finish reason for every answer",
                    )));
                }
            }
            Err(error) => self.fail(error),
        }
    }

    /// Ends the stream with `error`, after what was already decoded.
    fn fail(&mut self, error: LlmError) {
        self.done = true;
        self.pending.push_back(Err(error));
    }

    /// Queues `events` with usage merged: Anthropic sends the prompt's counts first and the
    /// answer's last.
    fn queue(&mut self, events: Vec<StreamEvent>) {
        for event in events {
            let event = match event {
                StreamEvent::Usage(mut usage) => {
                    if usage.input_tokens == 0 {
                        usage.input_tokens = self.usage.input_tokens;
                        usage.cached_input_tokens = self.usage.cached_input_tokens;
                        usage.cache_write_tokens = self.usage.cache_write_tokens;
                    }
                    self.usage = usage;
                    StreamEvent::Usage(usage)
                }
                event => event,
            };
            self.pending.push_back(Ok(event));
        }
    }
}

/// How far a buffer has been looked through: where to go on, and where the line there began.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Scan {
    at: usize,
    line_start: usize,
}

/// The next whole event in `buffer` (up to an empty line, with lines ended by LF, CRLF or CR),
/// removed from it. `scan` keeps how far an earlier look got, so an event that arrives in many
/// pieces is looked through once.
fn take_event(buffer: &mut BytesMut, scan: &mut Scan) -> Option<BytesMut> {
    let Scan {
        at: mut i,
        mut line_start,
    } = *scan;
    while i < buffer.len() {
        let byte = buffer[i];
        if byte != b'\n' && byte != b'\r' {
            i += 1;
            continue;
        }
        let mut next = i + 1;
        if byte == b'\r' {
            match buffer.get(next) {
                Some(b'\n') => next += 1,
                Some(_) => {}
                // A CR last in the buffer may be half of a CRLF: wait for the next chunk.
                None => break,
            }
        }
        if i == line_start {
            let mut event = buffer.split_to(next);
            event.truncate(line_start);
            *scan = Scan::default();
            return Some(event);
        }
        line_start = next;
        i = next;
    }
    *scan = Scan { at: i, line_start };
    None
}

/// A stream that ended without its proper end: a `Server` error, billed as incomplete.
fn cut_short(provider: &str, why: &str) -> LlmError {
    LlmError::new(ErrorKind::Server, format!("{provider}: {why}"))
}

enum Parsed {
    Events(Vec<StreamEvent>),
    Done,
}

/// One server-sent event: its `data` lines joined, read in the provider's format.
fn parse(
    dialect: Dialect,
    raw: &[u8],
    provider: &str,
    said: &mut Said,
) -> Result<Parsed, LlmError> {
    let text = String::from_utf8_lossy(raw);
    let mut data = String::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() {
        return Ok(Parsed::Events(Vec::new())); // a comment or a keep-alive
    }
    if data.trim() == "[DONE]" {
        return Ok(Parsed::Done);
    }
    let value: Value = serde_json::from_str(&data).map_err(|e| {
        tracing::debug!(provider, error = %e, "a stream event could not be read");
        LlmError::new(
            ErrorKind::Server,
            format!("{provider}: the upstream sent a stream event that could not be read"),
        )
    })?;
    if let Some(error) = value.get("error").filter(|e| !e.is_null()) {
        return Err(stream_error(provider, error));
    }
    Ok(match dialect {
        Dialect::OpenAi => Parsed::Events(openai_events(&value, said)),
        Dialect::Anthropic => anthropic_events(&value, said),
    })
}

/// What an OpenAI chunk says: each choice's pieces and finish, its usage, and (until they have
/// been said) the model and the answer's own fields.
fn openai_events(chunk: &Value, said: &mut Said) -> Vec<StreamEvent> {
    let mut events = Vec::new();
    if let Some(model) = chunk
        .get("model")
        .and_then(Value::as_str)
        .filter(|_| !said.model)
    {
        said.model = true;
        events.push(StreamEvent::Model(model.to_owned()));
    }
    if let (false, Value::Object(fields)) = (said.meta, chunk) {
        let mut meta: JsonMap = fields
            .iter()
            // `obfuscation` pads each chunk against length side channels: it is not the answer's.
            .filter(|(key, _)| {
                !matches!(key.as_str(), "choices" | "model" | "usage" | "obfuscation")
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if meta.get("object").and_then(Value::as_str) == Some("chat.completion.chunk") {
            meta.insert("object".into(), "chat.completion".into());
        }
        if !meta.is_empty() {
            said.meta = true;
            events.push(StreamEvent::Meta(meta));
        }
    }
    let choices = chunk.get("choices").and_then(Value::as_array);
    for choice in choices.into_iter().flatten() {
        let at = choice
            .get("index")
            .and_then(Value::as_u64)
            .map_or(0, |i| i as u32);
        if !said.choices.contains(&at) {
            said.choices.push(at);
        }
        let delta = choice.get("delta");
        let text = |key: &str| {
            delta
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        if let Some(text) = text("reasoning_content").or_else(|| text("reasoning")) {
            events.push(StreamEvent::Reasoning { choice: at, text });
        }
        if let Some(signature) = text(tollgate_core::REASONING_SIGNATURE) {
            events.push(StreamEvent::ReasoningSignature {
                choice: at,
                signature,
            });
        }
        if let Some(text) = text("content") {
            events.push(StreamEvent::Text { choice: at, text });
        }
        if let Some(text) = text("refusal") {
            events.push(StreamEvent::Refusal { choice: at, text });
        }
        let calls = delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array);
        for (position, call) in calls.into_iter().flatten().enumerate() {
            let string = |pointer: &str| {
                call.pointer(pointer)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .map_or(position as u32, |i| i as u32);
            events.push(StreamEvent::ToolCall {
                choice: at,
                call: ToolCallDelta::new(
                    index,
                    string("/id"),
                    string("/function/name"),
                    string("/function/arguments").unwrap_or_default(),
                ),
            });
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            if !said.finished.contains(&at) {
                said.finished.push(at);
            }
            events.push(StreamEvent::Finish {
                choice: at,
                reason: FinishReason::from_provider(reason),
            });
        }
    }
    if let Some(Ok(usage)) = chunk
        .get("usage")
        .and_then(Value::as_object)
        .map(Usage::from_openai)
    {
        events.push(StreamEvent::Usage(usage));
    }
    events
}

/// The usage an Anthropic `usage` object reports, with the prompt counted whole: Anthropic's
/// `input_tokens` leaves out the tokens read from and written to its cache.
pub(crate) fn anthropic_usage(usage: &Value) -> Option<Usage> {
    let number = |key| usage.get(key).and_then(Value::as_u64);
    if usage.as_object().is_none_or(|fields| fields.is_empty()) {
        return None;
    }
    let read = number("cache_read_input_tokens").unwrap_or(0);
    let written = number("cache_creation_input_tokens").unwrap_or(0);
    let input = number("input_tokens").unwrap_or(0);
    Some(
        Usage::new(input + read + written, number("output_tokens").unwrap_or(0))
            .with_cached_input(read)
            .with_cache_write(written),
    )
}

/// What one Anthropic event says. `said.blocks` maps the message's content blocks to the tool
/// calls they open, so that `input_json_delta` pieces find their call.
fn anthropic_events(event: &Value, said: &mut Said) -> Parsed {
    let blocks = &mut said.blocks;
    let mut events = Vec::new();
    let block = || event.get("index").and_then(Value::as_u64).unwrap_or(0);
    match event.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            let message = event.get("message");
            let model = message.and_then(|m| m.get("model")).and_then(Value::as_str);
            if let Some(model) = model.filter(|_| !said.model) {
                said.model = true;
                events.push(StreamEvent::Model(model.to_owned()));
            }
            if let Some(id) = message.and_then(|m| m.get("id")).filter(|_| !said.meta) {
                said.meta = true;
                let mut meta = JsonMap::new();
                meta.insert("id".into(), id.clone());
                events.push(StreamEvent::Meta(meta));
            }
            if let Some(usage) = message
                .and_then(|m| m.get("usage"))
                .and_then(anthropic_usage)
            {
                events.push(StreamEvent::Usage(usage));
            }
        }
        Some("content_block_start") => {
            let content = event.get("content_block");
            if content.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("tool_use") {
                let index = blocks.len() as u32;
                blocks.push((block(), index));
                let string = |key: &str| {
                    content
                        .and_then(|c| c.get(key))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                events.push(StreamEvent::ToolCall {
                    choice: 0,
                    call: ToolCallDelta::new(index, string("id"), string("name"), ""),
                });
            }
        }
        Some("content_block_delta") => {
            let delta = event.get("delta");
            let string = |key: &str| {
                delta
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                Some("thinking_delta") => {
                    if let Some(text) = string("thinking") {
                        events.push(StreamEvent::Reasoning { choice: 0, text });
                    }
                }
                Some("signature_delta") => {
                    if let Some(signature) = string("signature") {
                        events.push(StreamEvent::ReasoningSignature {
                            choice: 0,
                            signature,
                        });
                    }
                }
                Some("input_json_delta") => {
                    let at = block();
                    let call = blocks.iter().find(|(b, _)| *b == at).map(|(_, i)| *i);
                    if let (Some(index), Some(json)) = (call, string("partial_json")) {
                        events.push(StreamEvent::ToolCall {
                            choice: 0,
                            call: ToolCallDelta::new(index, None, None, json),
                        });
                    }
                }
                _ => {
                    if let Some(text) = string("text") {
                        events.push(StreamEvent::text(text));
                    }
                }
            }
        }
        Some("message_delta") => {
            if let Some(reason) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                events.push(StreamEvent::finish(FinishReason::from_provider(reason)));
            }
            if let Some(usage) = event.get("usage").and_then(anthropic_usage) {
                events.push(StreamEvent::Usage(usage));
            }
        }
        Some("message_stop") => return Parsed::Done,
        _ => {} // ping, content_block_stop
    }
    Parsed::Events(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_at_blank_lines_whatever_the_chunks() {
        let body =
            b"data: {\"a\":1}\n\nevent: x\r\ndata: two\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n";
        for split in 0..body.len() {
            let mut buffer = BytesMut::new();
            let mut scan = Scan::default();
            let mut events = Vec::new();
            for part in [&body[..split], &body[split..]] {
                buffer.extend_from_slice(part);
                while let Some(event) = take_event(&mut buffer, &mut scan) {
                    events.push(String::from_utf8(event.to_vec()).unwrap());
                }
            }
            assert_eq!(
                events,
                [
                    "data: {\"a\":1}\n",
                    "event: x\r\ndata: two\r\n",
                    ": keep-alive\n",
                    "data: [DONE]\n"
                ],
                "split at {split}"
            );
        }
    }

    /// What `body` decodes to, fed whole, then ended.
    fn decoded(
        dialect: Dialect,
        body: &str,
        max_event: usize,
    ) -> Vec<Result<StreamEvent, LlmError>> {
        let mut decoder = Decoder::new(dialect, "up", max_event);
        decoder.feed(body.as_bytes());
        let mut events: Vec<_> = std::iter::from_fn(|| decoder.next()).collect();
        decoder.end();
        events.extend(std::iter::from_fn(|| decoder.next()));
        events
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
            let message = last_error(&decoded(Dialect::OpenAi, &body, 1 << 20));
            assert!(message.contains(why), "{body}: {message}");
        }
        let whole = decoded(
            Dialect::OpenAi,
            &format!("{text}\n\n{stop}\n\ndata: [DONE]\n\n"),
            1 << 20,
        );
        assert!(whole.iter().all(Result::is_ok));

        // Two answers: both must finish.
        let two = r#"data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"},{"index":1,"delta":{"content":"b"}}]}"#;
        let message = last_error(&decoded(
            Dialect::OpenAi,
            &format!("{two}\n\ndata: [DONE]\n\n"),
            1 << 20,
        ));
        assert!(message.contains("every answer"), "{message}");

        let start = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":3}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

"#;
        let message = last_error(&decoded(Dialect::Anthropic, start, 1 << 20));
        assert!(message.contains("(message_stop)"), "{message}");
        let stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        assert!(
            decoded(Dialect::Anthropic, &format!("{start}{stop}"), 1 << 20)
                .iter()
                .all(Result::is_ok)
        );
    }

    #[test]
    fn an_event_over_its_bound_ends_the_stream_without_holding_it() {
        let huge = format!("data: {{\"pad\":\"{}\"}}", "x".repeat(10_000));
        let events = decoded(Dialect::OpenAi, &huge, 4_096);
        let message = last_error(&events);
        assert!(
            message.contains("over the limit of 4096 bytes"),
            "{message}"
        );
        // The same event within a larger bound is read (and is no answer).
        let events = decoded(Dialect::OpenAi, &format!("{huge}\n\n"), 1 << 20);
        assert!(!last_error(&events).contains("over the limit"));
    }

    #[test]
    fn an_error_event_names_no_secret_and_keeps_its_kind() {
        let body = r#"data: {"type":"error","error":{"type":"overloaded_error","message":"node 10.1.2.3 with key sk-live-abcdefgh is busy"}}"#;
        let events = decoded(Dialect::Anthropic, &format!("{body}\n\n"), 1 << 20);
        let error = events[0].as_ref().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Overloaded);
        assert_eq!(
            error.message(),
            "up: the upstream is overloaded (mid-stream)"
        );
        let said = error
            .extensions()
            .get::<tollgate_core::UpstreamError>()
            .unwrap();
        assert_eq!(said.error_type.as_deref(), Some("overloaded_error"));
        assert_eq!(said.message, None);
    }
}

#[cfg(test)]
mod split_tests {
    use proptest::prelude::*;
    use tollgate_core::{LlmResponse, stream::LlmStream};

    use super::*;

    const FIXTURES: [(&str, Dialect); 10] = [
        ("openai/tool_call.sse", Dialect::OpenAi),
        ("openai/json_schema.sse", Dialect::OpenAi),
        ("openai/reasoning_usage.sse", Dialect::OpenAi),
        ("openai/parallel_tool_calls.sse", Dialect::OpenAi),
        ("openai/n2.sse", Dialect::OpenAi),
        ("openai/refusal.sse", Dialect::OpenAi),
        ("openai/reasoning_content_vllm.sse", Dialect::OpenAi),
        ("anthropic/tool_use.sse", Dialect::Anthropic),
        ("anthropic/thinking.sse", Dialect::Anthropic),
        ("anthropic/cache_usage.sse", Dialect::Anthropic),
    ];

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// Every event `bytes` decode to, fed in the pieces that `cuts` make, and the body's end.
    fn decode(
        dialect: Dialect,
        bytes: &[u8],
        cuts: &[usize],
    ) -> Vec<Result<StreamEvent, LlmError>> {
        let mut decoder = Decoder::new(dialect, "test", 1 << 20);
        let mut events = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&bytes.len()]) {
            let cut = cut.clamp(from, bytes.len());
            decoder.feed(&bytes[from..cut]);
            from = cut;
            events.extend(std::iter::from_fn(|| decoder.next()));
        }
        decoder.end();
        events.extend(std::iter::from_fn(|| decoder.next()));
        events
    }

    fn assemble(events: Vec<Result<StreamEvent, LlmError>>) -> LlmResponse {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(LlmStream::from_events(events).collect())
            .unwrap()
    }

    fn same(a: &LlmResponse, b: &LlmResponse) -> bool {
        a.choices == b.choices && a.usage == b.usage && a.model == b.model && a.extra == b.extra
    }

    proptest! {
        #[test]
        fn any_split_of_any_fixture_assembles_the_same_answer(
            which in 0..FIXTURES.len(),
            mut cuts in prop::collection::vec(0usize..4_000, 0..12),
        ) {
            let (path, dialect) = FIXTURES[which];
            let bytes = fixture(path);
            cuts.sort_unstable();
            let whole = assemble(decode(dialect, &bytes, &[]));
            let split = assemble(decode(dialect, &bytes, &cuts));
            prop_assert!(same(&whole, &split), "{path} cut at {cuts:?}");
            prop_assert!(!whole.choices.is_empty());
        }

        #[test]
        fn any_bytes_decode_to_events_or_typed_errors(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            anthropic in any::<bool>(),
        ) {
            let dialect = if anthropic { Dialect::Anthropic } else { Dialect::OpenAi };
            let events = decode(dialect, &bytes, &[bytes.len() / 2]);
            // At most one error, and nothing after it.
            let first_error = events.iter().position(Result::is_err);
            prop_assert!(first_error.is_none_or(|at| at == events.len() - 1));
        }

        #[test]
        fn any_data_line_decodes_to_events_or_a_typed_error(
            data in ".{0,200}",
            anthropic in any::<bool>(),
        ) {
            let dialect = if anthropic { Dialect::Anthropic } else { Dialect::OpenAi };
            let body = format!("data: {data}\n\n");
            for event in decode(dialect, body.as_bytes(), &[]) {
                if let Err(error) = event {
                    prop_assert_eq!(error.kind(), ErrorKind::Server);
                }
            }
        }
    }
}

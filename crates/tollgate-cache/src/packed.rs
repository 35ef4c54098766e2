//! An answer as one run of bytes: the form the memory store keeps it in.
//!
//! A typed answer is dozens of small allocations: its strings, its choices, and at each level a
//! JSON map of the fields tollgate does not model, whose entries take over 100 bytes each before
//! their text. Kept typed, the gateway bench's answer (330 bytes of JSON) took 2 KB of heap and
//! a short answer as OpenAI sends it 6 KB. Packed, an answer is one allocation of about its
//! JSON's length, beside the two times the store's expiry reads, and it is read back into a
//! typed answer on a hit: every string copied out once (as a hit copied them from a typed entry
//! before) and every map of unmodeled fields rebuilt (where a typed entry shared its maps).
//!
//! The bytes are the length of the text, the text, then the structure. The text is every string
//! of the answer one after the other, so it is checked as UTF-8 once, as a whole, and each string
//! is cut from it in turn. The structure says what the strings are, with every integer and length
//! a LEB128 varint and each `string` the length of the next one in the text:
//!
//! ```text
//! answer   = model usage(5 varints) count choice* map(extra)
//! choice   = index finish value?(logprobs) map(extra) message
//! finish   = 0 none | 1 stop | 2 length | 3 tool calls | 4 content filter | 5 string
//! message  = 0 string?(content) string?(refusal) count call* map(extra)
//!          | 1 string(the message as JSON: it carries reasoning, whose field name is core's)
//! call     = string(id) string(kind) string(name) string(arguments) map(function extra) map(extra)
//! map      = count (string value)*
//! value    = 0 null | 1 false | 2 true | 3 unsigned | 4 negative (!n) | 5 f64 (8 bytes, LE)
//!          | 6 string(number's text) | 7 string | 8 count value* | 9 map
//! x?       = 0 | 1 x
//! ```
//!
//! Every field of [`Choice`], [`AssistantMessage`], [`ToolCall`], [`FunctionCall`] and [`Usage`]
//! is written by name: a field core adds to them must be added here, or a hit drops it (a test
//! checks their sizes, which most additions change).

use std::sync::Arc;

use serde_json::{Number, Value};
use tollgate_core::{
    AssistantMessage, Choice, FinishReason, FunctionCall, JsonMap, SharedMap, ToolCall, Usage,
};

/// The parts of an answer a cache keeps, borrowed from a response or an entry.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub(crate) model: &'a str,
    pub(crate) choices: &'a [Choice],
    pub(crate) usage: Usage,
    pub(crate) extra: &'a SharedMap,
}

/// The same parts, read back.
pub(crate) struct Answer {
    pub(crate) model: String,
    pub(crate) choices: Vec<Choice>,
    pub(crate) usage: Usage,
    pub(crate) extra: SharedMap,
}

/// An answer packed, with when it was stored and when it stops being served. A clone shares the
/// bytes.
#[derive(Clone)]
pub(crate) struct Packed {
    pub(crate) stored_at_ms: u64,
    pub(crate) expires_at_ms: u64,
    bytes: Arc<[u8]>,
}

/// Bytes a packed answer takes besides its packed length: the `Packed` itself and the counts at
/// the head of the bytes' allocation.
const FIXED: usize = std::mem::size_of::<Packed>() + 2 * std::mem::size_of::<usize>();

/// What a packed `parts` weighs: its length and [`FIXED`], counted without packing it.
pub(crate) fn weight(parts: Parts<'_>) -> usize {
    FIXED + Count::of(parts).len()
}

impl Packed {
    /// `parts` packed into one allocation of exactly their length.
    pub(crate) fn new(parts: Parts<'_>, stored_at_ms: u64, expires_at_ms: u64) -> Self {
        let count = Count::of(parts);
        // One allocation: an iterator of known length is collected straight into the `Arc`.
        let mut bytes: Arc<[u8]> = std::iter::repeat_n(0, count.len()).collect();
        let (text_len, len) = leb128(count.text as u64);
        let (head, rest) = Arc::get_mut(&mut bytes)
            .expect("not shared yet")
            .split_at_mut(len);
        head.copy_from_slice(&text_len[..len]);
        let (text, structure) = rest.split_at_mut(count.text);
        let mut fill = Fill { structure, text };
        write_answer(&mut fill, parts);
        debug_assert!(
            fill.structure.is_empty() && fill.text.is_empty(),
            "counted and written lengths differ"
        );
        Self {
            stored_at_ms,
            expires_at_ms,
            bytes,
        }
    }

    /// What it weighs: the same as [`weight`] of the parts it was packed from.
    pub(crate) fn weight(&self) -> usize {
        FIXED + self.bytes.len()
    }

    /// The answer, or `None` if the bytes are not one this module wrote.
    pub(crate) fn unpack(&self) -> Option<Answer> {
        let mut read = Read {
            structure: &self.bytes,
            text: "",
        };
        let text_len = read.len()?;
        let (text, structure) = read.structure.split_at_checked(text_len)?;
        read = Read {
            structure,
            text: std::str::from_utf8(text).ok()?,
        };
        let answer = read.answer()?;
        (read.structure.is_empty() && read.text.is_empty()).then_some(answer)
    }
}

// --- Writing: once to count, once to fill ---

trait Out {
    /// Structure: tags, integers, lengths.
    fn put(&mut self, bytes: &[u8]);
    /// Text: a string's bytes, after those of the strings before it.
    fn text(&mut self, text: &str);
}

/// Counts what would be written.
#[derive(Default)]
struct Count {
    structure: usize,
    text: usize,
}

impl Count {
    fn of(parts: Parts<'_>) -> Self {
        let mut count = Self::default();
        write_answer(&mut count, parts);
        count
    }

    /// The packed length: the text's length, the text and the structure.
    fn len(&self) -> usize {
        varint_len(self.text as u64) + self.text + self.structure
    }
}

impl Out for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.structure += bytes.len();
    }

    fn text(&mut self, text: &str) {
        self.text += text.len();
    }
}

/// Writes into the room left, which the count made exactly large enough.
struct Fill<'a> {
    structure: &'a mut [u8],
    text: &'a mut [u8],
}

impl<'a> Fill<'a> {
    fn copy(room: &mut &'a mut [u8], bytes: &[u8]) {
        let (head, rest) = std::mem::take(room).split_at_mut(bytes.len());
        head.copy_from_slice(bytes);
        *room = rest;
    }
}

impl Out for Fill<'_> {
    fn put(&mut self, bytes: &[u8]) {
        Self::copy(&mut self.structure, bytes);
    }

    fn text(&mut self, text: &str) {
        Self::copy(&mut self.text, text.as_bytes());
    }
}

/// `n` as LEB128 (seven bits a byte, low first, the high bit set on all but the last): the
/// bytes, and how many of them.
fn leb128(mut n: u64) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut len = 0;
    while n >= 0x80 {
        bytes[len] = n as u8 | 0x80;
        n >>= 7;
        len += 1;
    }
    bytes[len] = n as u8;
    (bytes, len + 1)
}

fn varint_len(n: u64) -> usize {
    leb128(n).1
}

/// `n` as LEB128. Most are lengths and tags under 128, one byte each, written without the loop.
#[inline]
fn varint(out: &mut impl Out, n: u64) {
    if n < 0x80 {
        out.put(&[n as u8]);
    } else {
        let (bytes, len) = leb128(n);
        out.put(&bytes[..len]);
    }
}

fn string(out: &mut impl Out, s: &str) {
    varint(out, s.len() as u64);
    out.text(s);
}

fn optional(out: &mut impl Out, s: Option<&str>) {
    match s {
        None => out.put(&[0]),
        Some(s) => {
            out.put(&[1]);
            string(out, s);
        }
    }
}

fn write_answer(out: &mut impl Out, parts: Parts<'_>) {
    string(out, parts.model);
    let Usage {
        input_tokens,
        output_tokens,
        cached_input_tokens,
        cache_write_tokens,
        reasoning_tokens,
        ..
    } = parts.usage;
    for n in [
        input_tokens,
        output_tokens,
        cached_input_tokens,
        cache_write_tokens,
        reasoning_tokens,
    ] {
        varint(out, n);
    }
    varint(out, parts.choices.len() as u64);
    for choice in parts.choices {
        write_choice(out, choice);
    }
    map(out, parts.extra);
}

fn write_choice(out: &mut impl Out, choice: &Choice) {
    varint(out, u64::from(choice.index));
    match &choice.finish_reason {
        None => out.put(&[0]),
        Some(FinishReason::Stop) => out.put(&[1]),
        Some(FinishReason::Length) => out.put(&[2]),
        Some(FinishReason::ToolCalls) => out.put(&[3]),
        Some(FinishReason::ContentFilter) => out.put(&[4]),
        Some(FinishReason::Other(reason)) => {
            out.put(&[5]);
            string(out, reason);
        }
    }
    match &choice.logprobs {
        None => out.put(&[0]),
        Some(logprobs) => {
            out.put(&[1]);
            value(out, logprobs);
        }
    }
    map(out, &choice.extra);
    let message = &choice.message;
    if message.reasoning.is_some() {
        // Which field the reasoning came in is core's to know, and JSON keeps it.
        out.put(&[1]);
        let json = serde_json::to_string(message).expect("a message serializes");
        string(out, &json);
        return;
    }
    out.put(&[0]);
    optional(out, message.content.as_deref());
    optional(out, message.refusal.as_deref());
    varint(out, message.tool_calls.len() as u64);
    for call in &message.tool_calls {
        string(out, &call.id);
        string(out, &call.kind);
        string(out, &call.function.name);
        string(out, &call.function.arguments);
        map(out, &call.function.extra);
        map(out, &call.extra);
    }
    map(out, &message.extra);
}

fn map(out: &mut impl Out, map: &JsonMap) {
    varint(out, map.len() as u64);
    for (key, item) in map {
        string(out, key);
        value(out, item);
    }
}

fn value(out: &mut impl Out, item: &Value) {
    match item {
        Value::Null => out.put(&[0]),
        Value::Bool(false) => out.put(&[1]),
        Value::Bool(true) => out.put(&[2]),
        Value::Number(n) => number(out, n),
        Value::String(s) => {
            out.put(&[7]);
            string(out, s);
        }
        Value::Array(items) => {
            out.put(&[8]);
            varint(out, items.len() as u64);
            for item in items {
                value(out, item);
            }
        }
        Value::Object(object) => {
            out.put(&[9]);
            map(out, object);
        }
    }
}

fn number(out: &mut impl Out, n: &Number) {
    if let Some(u) = n.as_u64() {
        out.put(&[3]);
        varint(out, u);
    } else if let Some(i) = n.as_i64() {
        // Negative here (a non-negative one is a u64), so its complement is not.
        out.put(&[4]);
        varint(out, !i as u64);
    } else if let Some(f) = n
        .as_f64()
        .filter(|&f| Number::from_f64(f).as_ref() == Some(n))
    {
        out.put(&[5]);
        out.put(&f.to_le_bytes());
    } else {
        // Only with serde_json's `arbitrary_precision`: a number no f64 holds exactly.
        out.put(&[6]);
        string(out, &n.to_string());
    }
}

// --- Reading ---

/// The structure still to read, and the text of the strings still to read.
struct Read<'a> {
    structure: &'a [u8],
    text: &'a str,
}

impl<'a> Read<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.structure.split_first()?;
        self.structure = rest;
        Some(first)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.structure.split_at_checked(n)?;
        self.structure = rest;
        Some(head)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(n);
            }
        }
        None
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    /// The next string: cut from the text, checked as UTF-8 already (`None` if the cut is not
    /// at a character's boundary).
    fn str(&mut self) -> Option<&'a str> {
        let len = self.len()?;
        let (head, rest) = self.text.split_at_checked(len)?;
        self.text = rest;
        Some(head)
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(str::to_owned)
    }

    fn optional(&mut self) -> Option<Option<String>> {
        match self.byte()? {
            0 => Some(None),
            1 => self.string().map(Some),
            _ => None,
        }
    }

    /// A count of items that each take at least one byte of structure: never more than the
    /// bytes left, so a damaged count cannot make a huge allocation.
    fn count(&mut self) -> Option<usize> {
        self.len().filter(|&n| n <= self.structure.len())
    }

    fn answer(&mut self) -> Option<Answer> {
        let model = self.string()?;
        let usage = Usage::new(self.varint()?, self.varint()?)
            .with_cached_input(self.varint()?)
            .with_cache_write(self.varint()?)
            .with_reasoning(self.varint()?);
        let choices = (0..self.count()?)
            .map(|_| self.choice())
            .collect::<Option<_>>()?;
        let extra = self.shared()?;
        Some(Answer {
            model,
            choices,
            usage,
            extra,
        })
    }

    fn choice(&mut self) -> Option<Choice> {
        let mut choice = Choice::default();
        choice.index = u32::try_from(self.varint()?).ok()?;
        choice.finish_reason = match self.byte()? {
            0 => None,
            1 => Some(FinishReason::Stop),
            2 => Some(FinishReason::Length),
            3 => Some(FinishReason::ToolCalls),
            4 => Some(FinishReason::ContentFilter),
            5 => Some(FinishReason::Other(self.str()?.into())),
            _ => return None,
        };
        choice.logprobs = match self.byte()? {
            0 => None,
            1 => Some(self.value()?),
            _ => return None,
        };
        choice.extra = self.shared()?;
        choice.message = match self.byte()? {
            0 => self.message()?,
            1 => serde_json::from_str(self.str()?).ok()?,
            _ => return None,
        };
        Some(choice)
    }

    fn message(&mut self) -> Option<AssistantMessage> {
        let mut message = AssistantMessage::default();
        message.content = self.optional()?;
        message.refusal = self.optional()?;
        message.tool_calls = (0..self.count()?)
            .map(|_| {
                let mut call = ToolCall::default();
                call.id = self.string()?;
                call.kind = self.string()?;
                let mut function = FunctionCall::default();
                function.name = self.string()?;
                function.arguments = self.string()?;
                function.extra = self.shared()?;
                call.function = function;
                call.extra = self.shared()?;
                Some(call)
            })
            .collect::<Option<_>>()?;
        message.extra = self.shared()?;
        Some(message)
    }

    /// The fields a level of the answer does not model: most levels have none, and an empty map
    /// is made without building one (nor seeding its hasher).
    fn shared(&mut self) -> Option<SharedMap> {
        if self.structure.first() == Some(&0) {
            self.structure = &self.structure[1..];
            return Some(SharedMap::default());
        }
        self.map().map(SharedMap::from)
    }

    fn map(&mut self) -> Option<JsonMap> {
        let n = self.count()?;
        let mut map = JsonMap::with_capacity(n);
        for _ in 0..n {
            let key = self.string()?;
            let item = self.value()?;
            map.insert(key, item);
        }
        Some(map)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Number(self.varint()?.into()),
            4 => Value::Number((!(self.varint()? as i64)).into()),
            5 => {
                let bytes = self.take(8)?.try_into().ok()?;
                Value::Number(Number::from_f64(f64::from_le_bytes(bytes))?)
            }
            6 => Value::Number(self.str()?.parse().ok()?),
            7 => Value::String(self.string()?),
            8 => Value::Array(
                (0..self.count()?)
                    .map(|_| self.value())
                    .collect::<Option<_>>()?,
            ),
            9 => Value::Object(self.map()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tollgate_core::LlmResponse;

    use super::*;

    /// An answer with something in every field the packing writes: tool calls with fields of
    /// their own, reasoning under both its names, every kind of finish reason and JSON value.
    fn everything() -> serde_json::Value {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000u64,
            "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_1", "service_tier": null,
            "choices": [
                { "index": 0, "finish_reason": "tool_calls",
                  "logprobs": { "content": [{ "token": "é", "logprob": -0.25, "bytes": [195, 169],
                                              "top_logprobs": [] }] },
                  "content_filter_results": { "hate": { "filtered": false, "severity": "safe" } },
                  "message": { "role": "assistant", "content": null, "refusal": "no",
                               "annotations": [], "audio": { "id": "a1", "expires_at": -1 },
                               "tool_calls": [{ "id": "call_1", "type": "function", "index": 0,
                                                "function": { "name": "weather", "strict": true,
                                                              "arguments": "{\"city\":\"Oslo\"}" } }] } },
                { "index": 1, "finish_reason": "function_call", "logprobs": null,
                  "message": { "role": "assistant", "content": "Sunny ☀", "reasoning": "It is July." } },
                { "index": 2, "finish_reason": "end_of_turn_custom",
                  "message": { "role": "assistant", "content": "", "reasoning_content": "think",
                               "reasoning_signature": "sig" } },
                { "index": 3, "finish_reason": "length", "message": { "role": "assistant", "content": "x" } },
                { "index": 4, "finish_reason": "content_filter", "message": { "content": "" } },
                { "index": 4_000_000_000u64, "finish_reason": "stop", "message": {} }
            ],
            "usage": { "prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100,
                       "prompt_tokens_details": { "cached_tokens": 64, "audio_tokens": 0 },
                       "completion_tokens_details": { "reasoning_tokens": 5 },
                       "cost": 0.001_23, "huge": 1e300, "max": u64::MAX, "min": i64::MIN }
        })
    }

    fn parts(response: &LlmResponse) -> Parts<'_> {
        Parts {
            model: &response.model,
            choices: &response.choices,
            usage: response.usage,
            extra: &response.extra,
        }
    }

    fn read_back(packed: &Packed) -> LlmResponse {
        let answer = packed.unpack().expect("reads back");
        let mut response =
            LlmResponse::with_choices(answer.model, answer.choices).with_usage(answer.usage);
        response.extra = answer.extra;
        response
    }

    #[test]
    fn an_answer_reads_back_whole_and_weighs_what_it_was_counted_at() {
        let wire = everything();
        let answer: LlmResponse = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(answer.usage.reasoning_tokens, 5);
        let packed = Packed::new(parts(&answer), 1_000, 61_000);
        assert_eq!((packed.stored_at_ms, packed.expires_at_ms), (1_000, 61_000));
        assert_eq!(packed.weight(), weight(parts(&answer)));
        assert_eq!(packed.weight(), FIXED + packed.bytes.len());

        let back = read_back(&packed);
        assert_eq!(back.model, answer.model);
        assert_eq!(back.choices, answer.choices);
        assert_eq!(back.usage, answer.usage);
        assert_eq!(back.extra, answer.extra);
        // Written out as the answer was, fields in their order (core adds the `role` it omits).
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&answer).unwrap()
        );
        // Shorter than the answer's JSON: the packing pays for lengths, not for names and quotes.
        assert!(packed.bytes.len() < serde_json::to_vec(&wire).unwrap().len());
    }

    #[test]
    fn usage_at_its_extremes_and_an_empty_answer_read_back() {
        let mut answer = LlmResponse::default().with_usage(
            Usage::new(u64::MAX, 0)
                .with_cached_input(1 << 63)
                .with_cache_write(127)
                .with_reasoning(128),
        );
        let back = read_back(&Packed::new(parts(&answer), 0, 0));
        assert_eq!(back.usage, answer.usage);
        assert!(back.choices.is_empty() && back.extra.is_empty() && back.model.is_empty());

        answer.extra.make_mut().insert("id".into(), json!("x"));
        let back = read_back(&Packed::new(parts(&answer), 0, 0));
        assert_eq!(back.extra, answer.extra);
    }

    #[test]
    fn bytes_cut_short_or_run_long_do_not_read() {
        let answer: LlmResponse = serde_json::from_value(everything()).unwrap();
        let whole = Packed::new(parts(&answer), 0, 1);
        for len in 0..whole.bytes.len() {
            let cut = Packed {
                bytes: Arc::from(&whole.bytes[..len]),
                ..whole.clone()
            };
            assert!(cut.unpack().is_none(), "cut to {len} bytes");
        }
        let mut long = whole.bytes.to_vec();
        long.push(0);
        let long = Packed {
            bytes: Arc::from(long),
            ..whole
        };
        assert!(long.unpack().is_none());
    }

    /// The packing writes every field by name: a field core adds to an answer's types would be
    /// dropped by a hit until it is written here too. Their sizes change with most additions.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_answer_types_have_the_fields_the_packing_writes() {
        use std::mem::size_of;
        let sizes = [
            size_of::<Choice>(),
            size_of::<AssistantMessage>(),
            size_of::<ToolCall>(),
            size_of::<FunctionCall>(),
            size_of::<Usage>(),
            size_of::<FinishReason>(),
        ];
        assert_eq!(
            sizes,
            [224, 112, 112, 56, 40, 24],
            "tollgate-core's answer types changed: write and read their new fields in packed.rs, \
             then update these sizes"
        );
    }
}

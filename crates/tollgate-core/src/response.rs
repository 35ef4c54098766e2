//! What a model answered ([`LlmResponse`]) and why it stopped ([`FinishReason`]).

use std::{fmt, sync::Arc};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{MapAccess, Visitor},
};
use serde_json::Value;

use crate::{
    JsonMap, SharedMap,
    choice::{AssistantMessage, Choice, ToolCall},
    usage::Usage,
    wire::{put, take},
};

/// A completed LLM call: every choice the provider returned, the usage, and everything else the
/// answer said, in the shape of an OpenAI chat completion.
///
/// It reads and writes that shape losslessly (serde): an OpenAI-compatible answer read and written
/// back is the same JSON, fields tollgate does not model included (`extra` at each level). The
/// first choice's text, finish reason and tool calls have accessors, since most calls ask for one.
///
/// `headers` keeps the provider's HTTP headers (rate-limit state, request ids); `extensions` is where
/// layers mark what they did (a cache hit, the number of attempts, time spent waiting for quota).
/// Neither is part of the JSON.
///
/// ```
/// use tollgate_core::LlmResponse;
///
/// let wire = serde_json::json!({
///     "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
///     "choices": [{ "index": 0, "finish_reason": "tool_calls", "logprobs": null,
///         "message": { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1",
///             "type": "function", "function": { "name": "weather", "arguments": "{\"city\":\"Oslo\"}" } }] } }],
///     "usage": { "prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100,
///         "prompt_tokens_details": { "cached_tokens": 64 } }
/// });
/// let answer: LlmResponse = serde_json::from_value(wire.clone()).unwrap();
/// assert_eq!(answer.tool_calls()[0].function.name, "weather");
/// assert_eq!(answer.usage.cached_input_tokens, 64);
/// assert_eq!(serde_json::to_value(&answer).unwrap(), wire);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LlmResponse {
    /// The model that actually answered (providers may resolve aliases).
    pub model: String,
    /// The answers, in order (one unless the request asked for several with `n`).
    pub choices: Vec<Choice>,
    /// Tokens consumed.
    pub usage: Usage,
    /// Every other field of the answer (`id`, `created`, `system_fingerprint`, ...) as it came;
    /// under `usage`, the usage fields [`Usage`] does not model.
    pub extra: SharedMap,
    /// The provider's response headers.
    pub headers: http::HeaderMap,
    /// Annotations added by layers.
    pub extensions: http::Extensions,
}

impl LlmResponse {
    /// A response from `model` with one choice saying `content`.
    pub fn new(model: impl Into<String>, content: impl Into<String>) -> Self {
        Self::with_choices(model, vec![Choice::new(0, AssistantMessage::text(content))])
    }

    /// A response from `model` with `choices`.
    pub fn with_choices(model: impl Into<String>, choices: Vec<Choice>) -> Self {
        Self {
            model: model.into(),
            choices,
            ..Self::default()
        }
    }

    /// The first choice's text, or `""` (no choice, or a choice that only calls tools).
    pub fn content(&self) -> &str {
        self.choices
            .first()
            .and_then(|choice| choice.message.content.as_deref())
            .unwrap_or_default()
    }

    /// Why the first choice stopped.
    pub fn finish_reason(&self) -> Option<&FinishReason> {
        self.choices.first()?.finish_reason.as_ref()
    }

    /// The first choice's tool calls.
    pub fn tool_calls(&self) -> &[ToolCall] {
        self.choices
            .first()
            .map_or(&[], |choice| &choice.message.tool_calls)
    }

    /// The text of every choice, in bytes: what a store holds of it, roughly.
    pub fn text_len(&self) -> usize {
        self.choices
            .iter()
            .map(|choice| {
                let message = &choice.message;
                let calls: usize = message
                    .tool_calls
                    .iter()
                    .map(|call| {
                        call.id.len() + call.function.name.len() + call.function.arguments.len()
                    })
                    .sum();
                message.content.as_ref().map_or(0, String::len)
                    + message.reasoning.as_ref().map_or(0, String::len)
                    + message.refusal.as_ref().map_or(0, String::len)
                    + calls
            })
            .sum()
    }

    /// Carries `stream` as this response's answer (a provider answering a streaming request).
    #[must_use]
    pub fn with_stream(mut self, stream: crate::stream::LlmStream) -> Self {
        self.extensions
            .insert(crate::stream::StreamSlot(std::sync::Arc::new(
                std::sync::Mutex::new(Some(stream)),
            )));
        self
    }

    /// Whether the answer is a stream still to be taken.
    pub fn is_stream(&self) -> bool {
        self.extensions
            .get::<crate::stream::StreamSlot>()
            .is_some_and(|slot| slot.0.lock().is_ok_and(|s| s.is_some()))
    }

    /// Takes the answer's stream, when it is one (the first taker of a cloned response has it).
    pub fn take_stream(&mut self) -> Option<crate::stream::LlmStream> {
        let slot = self.extensions.remove::<crate::stream::StreamSlot>()?;
        let mut guard = slot
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.take()
    }

    /// When the answer is a stream, has `done` called with the assembled answer once the stream
    /// ends without an error ([`LlmStream::on_complete`](crate::stream::LlmStream::on_complete));
    /// returns whether it is a stream (otherwise `done` is dropped uncalled).
    pub fn on_stream_complete(&mut self, done: impl FnOnce(&LlmResponse) + Send + 'static) -> bool {
        self.wrap_stream(|stream| stream.on_complete(done))
    }

    /// When the answer is a stream, has `done` called once it ends however it ends, with what was
    /// read of it and how it ended ([`LlmStream::on_end`](crate::stream::LlmStream::on_end));
    /// returns whether it is a stream (otherwise `done` is dropped uncalled).
    pub fn on_stream_end(
        &mut self,
        done: impl FnOnce(&LlmResponse, crate::stream::StreamEnd) + Send + 'static,
    ) -> bool {
        self.wrap_stream(|stream| stream.on_end(done))
    }

    fn wrap_stream(
        &mut self,
        wrap: impl FnOnce(crate::stream::LlmStream) -> crate::stream::LlmStream,
    ) -> bool {
        let Some(slot) = self.extensions.get::<crate::stream::StreamSlot>() else {
            return false;
        };
        let mut guard = slot
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.take() {
            Some(stream) => {
                *guard = Some(wrap(stream));
                true
            }
            None => false,
        }
    }

    /// Sets the usage.
    #[must_use]
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// Sets why the first choice stopped (making an empty first choice if there is none).
    #[must_use]
    pub fn with_finish_reason(mut self, reason: FinishReason) -> Self {
        self.first_choice_mut().finish_reason = Some(reason);
        self
    }

    /// The first choice, made empty if there is none.
    pub fn first_choice_mut(&mut self) -> &mut Choice {
        if self.choices.is_empty() {
            self.choices.push(Choice::default());
        }
        &mut self.choices[0]
    }

    /// Reads an OpenAI chat-completion object, its choices read already (an absent, `null` or
    /// empty `choices` stays in `object` as it came).
    fn read(mut object: JsonMap, choices: Vec<Choice>) -> Result<Self, String> {
        let usage = match object.get_mut("usage") {
            Some(Value::Object(usage)) => Usage::read_openai(usage)?,
            None | Some(Value::Null) => Usage::default(),
            Some(other) => return Err(format!("usage: expected an object, got {other}")),
        };
        Ok(Self {
            model: take(&mut object, "model")?,
            choices,
            usage,
            extra: object.into(),
            ..Self::default()
        })
    }

    /// Writes this answer as an OpenAI chat-completion object.
    fn write(&self) -> JsonMap {
        let mut object: JsonMap = (*self.extra).clone();
        put(&mut object, "model", &self.model);
        let choices: Vec<Value> = self.choices.iter().map(|c| c.write().into()).collect();
        object.insert("choices".into(), choices.into());
        let rest = match self.extra.get("usage") {
            Some(Value::Object(rest)) => Some(rest),
            _ => None,
        };
        if rest.is_some() || self.usage != Usage::default() {
            object.insert("usage".into(), self.usage.write_openai(rest).into());
        }
        object
    }
}

impl Serialize for LlmResponse {
    /// The answer as an OpenAI chat-completion object (headers and extensions are not part of it).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.write().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LlmResponse {
    /// Reads an OpenAI chat-completion object, keeping every field it does not model. The
    /// choices are read typed as they come, not gathered as JSON first.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(AnswerVisitor)
    }
}

struct AnswerVisitor;

impl<'de> Visitor<'de> for AnswerVisitor {
    type Value = LlmResponse;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OpenAI chat-completion object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LlmResponse, A::Error> {
        let mut object = JsonMap::new();
        let mut choices = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "choices" {
                // As `wire::take` reads it: `null` and `[]` stay as they came; a later
                // duplicate replaces an earlier one.
                object.remove("choices");
                match map.next_value::<Option<Vec<Choice>>>()? {
                    Some(read) if !read.is_empty() => choices = read,
                    read => {
                        choices = Vec::new();
                        let kept = if read.is_some() {
                            Value::Array(Vec::new())
                        } else {
                            Value::Null
                        };
                        object.insert(key, kept);
                    }
                }
            } else {
                let value = map.next_value::<Value>()?;
                object.insert(key, value);
            }
        }
        LlmResponse::read(object, choices).map_err(serde::de::Error::custom)
    }
}

/// Why the model stopped generating, normalized across providers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// A natural end or a stop sequence (`stop`, `end_turn`, `stop_sequence`).
    Stop,
    /// The output bound was reached (`length`, `max_tokens`).
    Length,
    /// The model asked for tool calls (`tool_calls`, `tool_use`, `function_call`).
    ToolCalls,
    /// The provider withheld output (`content_filter`, `refusal`).
    ContentFilter,
    /// Any other provider value, verbatim.
    Other(Arc<str>),
}

impl FinishReason {
    /// Maps a provider's finish / stop reason to the normalized value.
    pub fn from_provider(reason: &str) -> Self {
        match reason {
            "stop" | "end_turn" | "stop_sequence" => Self::Stop,
            "length" | "max_tokens" => Self::Length,
            "tool_calls" | "tool_use" | "function_call" => Self::ToolCalls,
            "content_filter" | "refusal" => Self::ContentFilter,
            other => Self::Other(other.into()),
        }
    }

    /// The normalized name (OpenAI's spelling), or the provider's value for [`FinishReason::Other`].
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::ContentFilter => "content_filter",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FinishReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let reason = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::from_provider(&reason))
    }
}

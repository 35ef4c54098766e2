//! One of a call's answers ([`Choice`]): what the model said ([`AssistantMessage`]), the tools it
//! called ([`ToolCall`]), and why it stopped; each with the fields tollgate does not model kept.

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{MapAccess, Visitor},
};
use serde_json::Value;

use crate::{
    FinishReason, JsonMap, SharedMap,
    wire::{put, take, take_object},
};

/// One of the answers a call returned (a request with `n` > 1 asks for several).
///
/// Reads and writes OpenAI's `choices[i]` object; fields tollgate does not model are kept in
/// `extra`, as they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Choice {
    /// Its place among the answers.
    pub index: u32,
    /// What the model said.
    pub message: AssistantMessage,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
    /// Token log-probabilities, when asked for, as the provider sent them.
    pub logprobs: Option<Value>,
    /// Every other field, as it came.
    pub extra: SharedMap,
}

impl Choice {
    /// The choice at `index` saying `message`.
    pub fn new(index: u32, message: AssistantMessage) -> Self {
        Self {
            index,
            message,
            ..Self::default()
        }
    }

    /// With `reason` as why it stopped.
    #[must_use]
    pub fn with_finish_reason(mut self, reason: FinishReason) -> Self {
        self.finish_reason = Some(reason);
        self
    }
}

/// The assistant's turn in one choice: text, a refusal, reasoning, tool calls.
///
/// Reads and writes OpenAI's `message` object. Reasoning is read from `reasoning_content` (vLLM,
/// DeepSeek) or `reasoning` (OpenRouter, Ollama) and written back under the same name; Anthropic's
/// `thinking` becomes `reasoning_content`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AssistantMessage {
    /// The text, if any (`None` for a turn that only calls tools).
    pub content: Option<String>,
    /// Why the model declined, when it did (OpenAI structured outputs).
    pub refusal: Option<String>,
    /// The model's reasoning, where the provider shows it.
    pub reasoning: Option<String>,
    /// The tools the model calls, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Every other field (`annotations`, `audio`, ...), as it came. (`role` is always
    /// `assistant`, and written so.)
    pub extra: SharedMap,
    reasoning_field: ReasoningField,
}

/// The message field holding the signature of its reasoning, where the provider signs it
/// (Anthropic's `thinking` blocks): sent back with the reasoning, it lets a conversation that
/// calls tools while thinking go on.
pub const REASONING_SIGNATURE: &str = "reasoning_signature";

/// Which field reasoning came in, so it goes back in the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ReasoningField {
    #[default]
    ReasoningContent,
    Reasoning,
}

impl ReasoningField {
    const fn key(self) -> &'static str {
        match self {
            Self::ReasoningContent => "reasoning_content",
            Self::Reasoning => "reasoning",
        }
    }
}

impl AssistantMessage {
    /// A message saying `text`.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: Some(text.into()),
            ..Self::default()
        }
    }

    /// A message calling `tools`, saying nothing.
    pub fn tool_calls(tools: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: tools,
            ..Self::default()
        }
    }

    /// With `reasoning` as the model's reasoning.
    #[must_use]
    pub fn with_reasoning(mut self, reasoning: impl Into<String>) -> Self {
        self.reasoning = Some(reasoning.into());
        self
    }
}

/// A call the model asks the caller to make: OpenAI's `tool_calls[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolCall {
    /// The id a `tool` message answers with.
    pub id: String,
    /// The kind of tool (`function`).
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
    /// Every other field, as it came.
    pub extra: SharedMap,
}

impl ToolCall {
    /// A call of function `name` with `arguments` (JSON text, as the model wrote it), under `id`.
    pub fn function(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            kind: "function".to_owned(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
                extra: SharedMap::default(),
            },
            extra: SharedMap::default(),
        }
    }
}

/// The function a [`ToolCall`] names, and its arguments as the provider's string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments: JSON text, exactly as the model produced it (it may not even parse).
    pub arguments: String,
    /// Every other field, as it came.
    pub extra: SharedMap,
}

// --- OpenAI's JSON, both ways ---

impl Choice {
    pub(crate) fn write(&self) -> JsonMap {
        let mut object: JsonMap = (*self.extra).clone();
        // Always written: OpenAI's clients read it even for the only choice.
        object.insert("index".into(), self.index.into());
        object.insert("message".into(), self.message.write().into());
        let kept = match object.get("finish_reason") {
            Some(Value::String(raw)) => {
                self.finish_reason.as_ref() == Some(&FinishReason::from_provider(raw))
            }
            _ => false,
        };
        if !kept {
            put(&mut object, "finish_reason", &self.finish_reason);
        }
        put(&mut object, "logprobs", &self.logprobs);
        object
    }
}

impl AssistantMessage {
    pub(crate) fn read(mut object: JsonMap) -> Result<Self, String> {
        let (reasoning, reasoning_field) = match take(&mut object, "reasoning_content")? {
            Some(text) => (Some(text), ReasoningField::ReasoningContent),
            None => match take::<Option<String>>(&mut object, "reasoning")? {
                Some(text) => (Some(text), ReasoningField::Reasoning),
                None => (None, ReasoningField::default()),
            },
        };
        let tool_calls: Vec<JsonMap> = take(&mut object, "tool_calls")?;
        // Every answer's message is the assistant's, and writing says so.
        if object.get("role").and_then(Value::as_str) == Some("assistant") {
            object.remove("role");
        }
        Ok(Self {
            content: take(&mut object, "content")?,
            refusal: take(&mut object, "refusal")?,
            reasoning,
            tool_calls: tool_calls
                .into_iter()
                .map(ToolCall::read)
                .collect::<Result<_, _>>()?,
            extra: object.into(),
            reasoning_field,
        })
    }

    pub(crate) fn write(&self) -> JsonMap {
        let mut object: JsonMap = (*self.extra).clone();
        if !object.contains_key("role") {
            object.insert("role".into(), "assistant".into());
        }
        put(&mut object, "content", &self.content);
        put(&mut object, "refusal", &self.refusal);
        put(&mut object, self.reasoning_field.key(), &self.reasoning);
        let calls: Vec<Value> = self
            .tool_calls
            .iter()
            .map(|call| call.write().into())
            .collect();
        put(&mut object, "tool_calls", &calls);
        object
    }
}

impl ToolCall {
    pub(crate) fn read(mut object: JsonMap) -> Result<Self, String> {
        let function = match take_object(&mut object, "function")? {
            Some(mut function) => FunctionCall {
                name: take(&mut function, "name")?,
                arguments: take(&mut function, "arguments")?,
                extra: function.into(),
            },
            None => FunctionCall::default(),
        };
        Ok(Self {
            id: take(&mut object, "id")?,
            kind: take(&mut object, "type")?,
            function,
            extra: object.into(),
        })
    }

    pub(crate) fn write(&self) -> JsonMap {
        let mut object: JsonMap = (*self.extra).clone();
        put(&mut object, "id", &self.id);
        put(&mut object, "type", &self.kind);
        let mut function: JsonMap = (*self.function.extra).clone();
        put(&mut function, "name", &self.function.name);
        put(&mut function, "arguments", &self.function.arguments);
        object.insert("function".into(), function.into());
        object
    }
}

macro_rules! openai_serde {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.write().serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let object = JsonMap::deserialize(deserializer)?;
                Self::read(object).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

openai_serde!(AssistantMessage, ToolCall);

impl Serialize for Choice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.write().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Choice {
    /// Reads OpenAI's `choices[i]` field by field, as it comes: every answer has one, and an
    /// object gathered first and taken apart after costs a map and its hashing per field.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ChoiceVisitor)
    }
}

struct ChoiceVisitor;

impl<'de> Visitor<'de> for ChoiceVisitor {
    type Value = Choice;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a chat-completion choice object")
    }

    // As `wire::take` reads a modeled field: an absent or `null` one stays in `extra` as it
    // came, and a later duplicate of a field replaces the earlier one.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Choice, A::Error> {
        let mut choice = Choice::default();
        let mut extra = JsonMap::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "message" => {
                    extra.remove("message");
                    match map.next_value::<Option<AssistantMessage>>()? {
                        Some(message) => choice.message = message,
                        None => {
                            choice.message = AssistantMessage::default();
                            extra.insert(key, Value::Null);
                        }
                    }
                }
                "finish_reason" => {
                    extra.remove("finish_reason");
                    choice.finish_reason = None;
                    match map.next_value::<Option<String>>()? {
                        Some(raw) => {
                            let reason = FinishReason::from_provider(&raw);
                            // A provider's own spelling (`function_call`) is kept, so it goes
                            // back as it came.
                            if reason.as_str() != raw {
                                extra.insert(key, Value::String(raw));
                            }
                            choice.finish_reason = Some(reason);
                        }
                        None => {
                            extra.insert(key, Value::Null);
                        }
                    }
                }
                // Taken whatever its value: it is always written back.
                "index" => choice.index = map.next_value::<Option<u32>>()?.unwrap_or(0),
                "logprobs" => {
                    extra.remove("logprobs");
                    choice.logprobs = map.next_value::<Option<Value>>()?;
                    if choice.logprobs.is_none() {
                        extra.insert(key, Value::Null);
                    }
                }
                _ => {
                    let value = map.next_value::<Value>()?;
                    extra.insert(key, value);
                }
            }
        }
        choice.extra = extra.into();
        Ok(choice)
    }
}

//! What a model answered ([`LlmResponse`]) and what it cost in tokens ([`Usage`]).

use std::{fmt, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A completed LLM call.
///
/// `headers` keeps the provider's HTTP headers (rate-limit state, request ids); `extensions` is where
/// layers mark what they did (a cache hit, the number of attempts, time spent waiting for quota).
#[derive(Debug, Clone, Default)]
pub struct LlmResponse {
    /// The generated text.
    pub content: String,
    /// The model that actually answered (providers may resolve aliases).
    pub model: String,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
    /// Tokens consumed.
    pub usage: Usage,
    /// The provider's response headers.
    pub headers: http::HeaderMap,
    /// Annotations added by layers.
    pub extensions: http::Extensions,
}

impl LlmResponse {
    /// A response from `model` with the given text.
    pub fn new(model: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            model: model.into(),
            ..Self::default()
        }
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

    /// Sets the finish reason.
    #[must_use]
    pub fn with_finish_reason(mut self, reason: FinishReason) -> Self {
        self.finish_reason = Some(reason);
        self
    }
}

/// Tokens consumed by one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Usage of `input_tokens` prompt and `output_tokens` generated tokens.
    pub const fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
        }
    }

    /// Prompt plus generated tokens.
    pub const fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// What to count for a streamed answer that ended early (dropped or failed midway), when
    /// this is the usage it reported by then: a provider bills such a stream all the same. The
    /// prompt is `prompt_estimate` when none was reported, and the answer at least
    /// `read_estimate`, the estimate of the text read (a provider may report a placeholder count
    /// when the stream starts and the real one only at its end).
    ///
    /// ```
    /// use tollgate_core::Usage;
    ///
    /// // Nothing reported: both sides estimated.
    /// assert_eq!(Usage::default().of_unfinished_stream(12, 3), Usage::new(12, 3));
    /// // The prompt's size reported with a placeholder answer count, then 40 tokens of text read.
    /// assert_eq!(Usage::new(30, 1).of_unfinished_stream(12, 40), Usage::new(30, 40));
    /// ```
    #[must_use]
    pub const fn of_unfinished_stream(self, prompt_estimate: u64, read_estimate: u64) -> Self {
        Self {
            input_tokens: if self.input_tokens > 0 {
                self.input_tokens
            } else {
                prompt_estimate
            },
            output_tokens: if self.output_tokens > read_estimate {
                self.output_tokens
            } else {
                read_estimate
            },
        }
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

//! [`Usage`]: what a call cost in tokens, normalized across providers, and its OpenAI wire form.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::JsonMap;

/// Tokens consumed by one call, normalized across providers.
///
/// `input_tokens` is the whole prompt, as OpenAI counts it: the tokens read from a provider's
/// prompt cache (`cached_input_tokens`) and those written to it (`cache_write_tokens`) are part of
/// it. Anthropic reports the three apart, and its client adds them up. `output_tokens` is the
/// whole answer, reasoning (`reasoning_tokens`) included.
///
/// ```
/// use tollgate_core::Usage;
///
/// let usage = Usage::new(1_200, 50).with_cached_input(1_000);
/// assert_eq!(usage.uncached_input_tokens(), 200);
/// assert_eq!(usage.total(), 1_250);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Usage {
    /// Prompt tokens, cached and cache-written ones included.
    pub input_tokens: u64,
    /// Generated tokens, reasoning included.
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache (OpenAI
    /// `prompt_tokens_details.cached_tokens`, Anthropic `cache_read_input_tokens`).
    #[serde(skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache (Anthropic
    /// `cache_creation_input_tokens`).
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Generated tokens spent reasoning (`completion_tokens_details.reasoning_tokens`).
    #[serde(skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Usage of `input_tokens` prompt and `output_tokens` generated tokens.
    pub const fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// With `tokens` of the prompt read from the provider's cache.
    #[must_use]
    pub const fn with_cached_input(mut self, tokens: u64) -> Self {
        self.cached_input_tokens = tokens;
        self
    }

    /// With `tokens` of the prompt written to the provider's cache.
    #[must_use]
    pub const fn with_cache_write(mut self, tokens: u64) -> Self {
        self.cache_write_tokens = tokens;
        self
    }

    /// With `tokens` of the answer spent reasoning.
    #[must_use]
    pub const fn with_reasoning(mut self, tokens: u64) -> Self {
        self.reasoning_tokens = tokens;
        self
    }

    /// Prompt plus generated tokens.
    pub const fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Prompt tokens neither read from nor written to the provider's cache: those billed at the
    /// plain input rate.
    pub const fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_write_tokens)
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
    pub const fn of_unfinished_stream(mut self, prompt_estimate: u64, read_estimate: u64) -> Self {
        if self.input_tokens == 0 {
            self.input_tokens = prompt_estimate;
        }
        if self.output_tokens < read_estimate {
            self.output_tokens = read_estimate;
        }
        self
    }

    /// The usage an OpenAI `usage` object reports: `prompt_tokens`, `completion_tokens`, and the
    /// cached and reasoning tokens of its details objects.
    ///
    /// # Errors
    ///
    /// A message naming the field that is not a token count.
    pub fn from_openai(object: &JsonMap) -> Result<Self, String> {
        Self::read_openai(&mut object.clone())
    }

    /// Reads an OpenAI `usage` object, taking out the fields modeled here and leaving the rest
    /// (`total_tokens`, which is derived, is dropped; details objects stay, less the fields
    /// taken, so that [`write_openai`](Self::write_openai) puts them back where they were).
    pub(crate) fn read_openai(object: &mut JsonMap) -> Result<Self, String> {
        fn number(map: &mut JsonMap, key: &str) -> Result<u64, String> {
            match map.remove(key) {
                None | Some(Value::Null) => Ok(0),
                Some(value) => value
                    .as_u64()
                    .ok_or_else(|| format!("usage.{key} is not a token count: {value}")),
            }
        }
        let mut usage = Self::new(
            number(object, "prompt_tokens")?,
            number(object, "completion_tokens")?,
        );
        object.remove("total_tokens");
        usage.cache_write_tokens = number(object, "cache_creation_input_tokens")?;
        if let Some(Value::Object(details)) = object.get_mut("prompt_tokens_details") {
            usage.cached_input_tokens = number(details, "cached_tokens")?;
        }
        // DeepSeek counts its cache reads apart (the rest as misses, already in the prompt);
        // read, and left where it came for the caller.
        if usage.cached_input_tokens == 0
            && let Some(hits) = object.get("prompt_cache_hit_tokens")
        {
            usage.cached_input_tokens = hits.as_u64().ok_or_else(|| {
                format!("usage.prompt_cache_hit_tokens is not a token count: {hits}")
            })?;
        }
        if let Some(Value::Object(details)) = object.get_mut("completion_tokens_details") {
            usage.reasoning_tokens = number(details, "reasoning_tokens")?;
        }
        Ok(usage)
    }

    /// Writes this usage as an OpenAI `usage` object, over `rest` (the usage fields tollgate does
    /// not model, as an answer carried them).
    pub fn write_openai(&self, rest: Option<&JsonMap>) -> JsonMap {
        let mut object = rest.cloned().unwrap_or_default();
        object.insert("prompt_tokens".into(), self.input_tokens.into());
        object.insert("completion_tokens".into(), self.output_tokens.into());
        object.insert("total_tokens".into(), self.total().into());
        if self.cache_write_tokens > 0 {
            object.insert(
                "cache_creation_input_tokens".into(),
                self.cache_write_tokens.into(),
            );
        }
        let mut detail = |key: &str, field: &str, value: u64| match object.get_mut(key) {
            Some(Value::Object(details)) => {
                details.insert(field.into(), value.into());
            }
            _ if value > 0 => {
                let mut details = JsonMap::new();
                details.insert(field.into(), value.into());
                object.insert(key.into(), details.into());
            }
            _ => {}
        };
        detail(
            "prompt_tokens_details",
            "cached_tokens",
            self.cached_input_tokens,
        );
        detail(
            "completion_tokens_details",
            "reasoning_tokens",
            self.reasoning_tokens,
        );
        object
    }
}

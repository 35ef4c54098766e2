//! A request's sampling and output parameters ([`Params`]), and the numbers among them that set
//! what a call may cost, read exactly once.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::SerializeMap};
use serde_json::Value;

use crate::json::SharedMap;

/// The request fields tollgate does not model ([`Params::extra`]): a [`SharedMap`] that clones of
/// a request share, and that is not allocated until something is put in it.
pub type ExtraParams = SharedMap;

/// Sampling and output parameters.
///
/// The common ones are typed; everything else the caller sent (`tools`, `response_format`,
/// `stream`, `user`, provider-specific knobs, unknown future fields) lands in `extra`, in the order
/// it arrived, and is sent on unchanged.
///
/// # The numbers that set what a call may cost
///
/// `max_tokens` (or OpenAI's newer `max_completion_tokens`), `n`, `best_of` and `top_logprobs` are
/// read once, strictly, when a request is deserialized: any JSON number that is a whole number
/// within range is taken (`100`, `100.0`, `1e3`), and anything else (a fraction, a negative, a
/// value past `u32`, a string) is an error that names the field. What a rate limiter reserves,
/// what a gateway caps and what a provider is sent are that one typed value; no layer reads the
/// raw field again.
///
/// ```
/// use tollgate_core::{LlmRequest, MaxTokensName};
///
/// let request: LlmRequest = serde_json::from_str(
///     r#"{"model": "m", "messages": [], "max_completion_tokens": 1e3, "n": 2.0}"#,
/// ).unwrap();
/// assert_eq!(request.params.max_tokens, Some(1000));
/// assert_eq!(request.params.max_tokens_name, Some(MaxTokensName::MaxCompletionTokens));
/// assert_eq!(request.params.max_billed_output_tokens(), Some(2000)); // 1,000 tokens × 2 answers
///
/// for bad in [r#""n": 1.5"#, r#""max_tokens": -1"#, r#""max_tokens": 18446744073709551616"#, r#""n": "2""#] {
///     let body = format!(r#"{{"model": "m", "messages": [], {bad}}}"#);
///     let error = serde_json::from_str::<LlmRequest>(&body).unwrap_err().to_string();
///     let field = bad.split('"').nth(1).unwrap();
///     assert!(error.starts_with(&format!("{field}: expected a whole number")), "{error}");
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Upper bound on generated tokens, per answer.
    pub max_tokens: Option<u32>,
    /// The name `max_tokens` came under, when a caller wrote it: it is written back under the
    /// same name. `None` when the application or a layer set it: each provider then writes the
    /// name its API takes.
    pub max_tokens_name: Option<MaxTokensName>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Stop sequences. A single string on the wire is read as a list of one.
    pub stop: Vec<String>,
    /// Seed for providers that support reproducible sampling.
    pub seed: Option<i64>,
    /// How many answers (choices) to generate; each is billed.
    pub n: Option<u32>,
    /// How many candidates to generate server-side, of which the best `n` come back (legacy
    /// completions, vLLM); each candidate is billed.
    pub best_of: Option<u32>,
    /// How many of the likeliest tokens to return at each position, with their log-probabilities.
    pub top_logprobs: Option<u32>,
    /// All other top-level request fields, in arrival order.
    pub extra: ExtraParams,
}

/// The wire name a request's output bound came under ([`Params::max_tokens_name`]); in a
/// configuration, `max_tokens`, `max_completion_tokens` or `both`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MaxTokensName {
    /// `max_tokens`: OpenAI's older name, and Anthropic's and most compatible servers'.
    MaxTokens,
    /// `max_completion_tokens`: OpenAI's newer name, the only one its reasoning models take.
    MaxCompletionTokens,
    /// Both, with one value: written back as both.
    Both,
    /// `max_output_tokens`: the Responses API's name. A call from that API keeps it so an error
    /// about its bound names the field the caller wrote; a chat-completions server is sent the
    /// bound under its own name. Not a name a configuration can give a provider.
    #[serde(skip_deserializing)]
    MaxOutputTokens,
}

impl MaxTokensName {
    /// The field names it is written under.
    pub const fn names(self) -> &'static [&'static str] {
        match self {
            Self::MaxTokens => &["max_tokens"],
            Self::MaxCompletionTokens => &["max_completion_tokens"],
            Self::Both => &["max_tokens", "max_completion_tokens"],
            Self::MaxOutputTokens => &["max_output_tokens"],
        }
    }
}

impl Params {
    /// The output bound per answer the provider will apply, when the request sets one.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_tokens.map(u64::from)
    }

    /// How many answers the provider generates, and bills: the larger of `n` and `best_of`, 1 by
    /// default.
    pub fn choices(&self) -> u32 {
        self.n.unwrap_or(1).max(self.best_of.unwrap_or(1)).max(1)
    }

    /// The most output the provider can bill for this request: `max_tokens` × [`choices`](Self::choices),
    /// when it sets a bound.
    pub fn max_billed_output_tokens(&self) -> Option<u64> {
        self.max_output_tokens()
            .map(|max| max.saturating_mul(u64::from(self.choices())))
    }

    /// Whether the caller asked for a streamed answer to end with its usage
    /// (`stream_options.include_usage: true`).
    pub fn include_usage(&self) -> bool {
        self.extra
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Inserts or replaces a field of `extra` (copying the map only if another request shares it).
    pub fn set_extra(&mut self, key: impl Into<String>, value: Value) {
        self.extra.make_mut().insert(key.into(), value);
    }
}

impl Serialize for Params {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(temperature) = self.temperature {
            map.serialize_entry("temperature", &temperature)?;
        }
        if let Some(max) = self.max_tokens {
            let name = self.max_tokens_name.unwrap_or(MaxTokensName::MaxTokens);
            for field in name.names() {
                map.serialize_entry(field, &max)?;
            }
        }
        if let Some(top_p) = self.top_p {
            map.serialize_entry("top_p", &top_p)?;
        }
        if !self.stop.is_empty() {
            map.serialize_entry("stop", &self.stop)?;
        }
        let counts = [
            ("seed", self.seed),
            ("n", self.n.map(i64::from)),
            ("best_of", self.best_of.map(i64::from)),
            ("top_logprobs", self.top_logprobs.map(i64::from)),
        ];
        for (field, value) in counts {
            if let Some(value) = value {
                map.serialize_entry(field, &value)?;
            }
        }
        for (field, value) in self.extra.iter() {
            map.serialize_entry(field, value)?;
        }
        map.end()
    }
}

/// What the wire carries, before the two names of the output bound become one.
#[derive(Deserialize)]
struct Wire {
    #[serde(default, deserialize_with = "read_temperature")]
    temperature: Option<f64>,
    #[serde(default, deserialize_with = "read_max_tokens")]
    max_tokens: Option<u32>,
    #[serde(default, deserialize_with = "read_max_completion_tokens")]
    max_completion_tokens: Option<u32>,
    #[serde(default, deserialize_with = "read_top_p")]
    top_p: Option<f64>,
    #[serde(default, deserialize_with = "one_or_many")]
    stop: Vec<String>,
    #[serde(default, deserialize_with = "read_seed")]
    seed: Option<i64>,
    #[serde(default, deserialize_with = "read_n")]
    n: Option<u32>,
    #[serde(default, deserialize_with = "read_best_of")]
    best_of: Option<u32>,
    #[serde(default, deserialize_with = "read_top_logprobs")]
    top_logprobs: Option<u32>,
    /// The Responses API's name for the bound: refused here, where it would pass for an unknown
    /// field and bound nothing.
    #[serde(default)]
    max_output_tokens: Option<Value>,
    #[serde(flatten)]
    extra: ExtraParams,
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        if wire.max_output_tokens.is_some_and(|value| !value.is_null()) {
            return Err(D::Error::custom(
                "max_output_tokens: the Responses API's name for the bound; chat completions take \
                 max_completion_tokens or max_tokens",
            ));
        }
        let (max_tokens, max_tokens_name) = match (wire.max_tokens, wire.max_completion_tokens) {
            (None, None) => (None, None),
            (Some(max), None) => (Some(max), Some(MaxTokensName::MaxTokens)),
            (None, Some(max)) => (Some(max), Some(MaxTokensName::MaxCompletionTokens)),
            (Some(a), Some(b)) if a == b => (Some(a), Some(MaxTokensName::Both)),
            (Some(a), Some(b)) => {
                return Err(D::Error::custom(format_args!(
                    "max_completion_tokens: {b} disagrees with max_tokens {a}; send one of them"
                )));
            }
        };
        Ok(Self {
            temperature: wire.temperature,
            max_tokens,
            max_tokens_name,
            top_p: wire.top_p,
            stop: wire.stop,
            seed: wire.seed,
            n: wire.n,
            best_of: wire.best_of,
            top_logprobs: wire.top_logprobs,
            extra: wire.extra,
        })
    }
}

// One reader per field, so the error names it.
macro_rules! count_readers {
    ($($reader:ident: $field:literal from $least:literal),* $(,)?) => {$(
        fn $reader<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
            match Value::deserialize(deserializer)? {
                Value::Null => Ok(None),
                value => whole_number(&value, $least)
                    .map(Some)
                    .map_err(|e| D::Error::custom(format_args!("{}: {e}", $field))),
            }
        }
    )*};
}

count_readers! {
    read_max_tokens: "max_tokens" from 1,
    read_max_completion_tokens: "max_completion_tokens" from 1,
    read_n: "n" from 1,
    read_best_of: "best_of" from 1,
    read_top_logprobs: "top_logprobs" from 0,
}

// The other typed fields, read the same way: `null` is absent, and an error names the field.
macro_rules! typed_readers {
    ($($reader:ident: $field:literal as $ty:ty),* $(,)?) => {$(
        fn $reader<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<$ty>, D::Error> {
            Option::<$ty>::deserialize(deserializer)
                .map_err(|e| D::Error::custom(format_args!("{}: {e}", $field)))
        }
    )*};
}

typed_readers! {
    read_temperature: "temperature" as f64,
    read_top_p: "top_p" as f64,
    read_seed: "seed" as i64,
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        None(()),
    }
    match OneOrMany::deserialize(deserializer) {
        Ok(OneOrMany::One(one)) => Ok(vec![one]),
        Ok(OneOrMany::Many(many)) => Ok(many),
        Ok(OneOrMany::None(())) => Ok(Vec::new()),
        Err(_) => Err(D::Error::custom(
            "stop: expected a string or a list of strings",
        )),
    }
}

/// `value` as a whole number from `least` to `u32::MAX`: any JSON number that is one (`100`,
/// `100.0`, `1e3`); anything else is refused with what was found.
///
/// How every number that sets what a call may cost is read, by [`Params`]'s deserializer and by
/// front doors that read their own shapes.
///
/// ```
/// use serde_json::json;
/// use tollgate_core::whole_number;
///
/// assert_eq!(whole_number(&json!(100.0), 1), Ok(100));
/// assert_eq!(whole_number(&json!(0), 0), Ok(0));
/// let error = whole_number(&json!(0.5), 1).unwrap_err();
/// assert_eq!(error.to_string(), "expected a whole number from 1 to 4294967295, got 0.5");
/// assert!(whole_number(&json!(4294967296_u64), 1).is_err());
/// assert!(whole_number(&json!("7"), 1).is_err());
/// ```
///
/// # Errors
///
/// A [`NotAWholeNumber`] for a fraction, a number out of range, or anything but a number.
pub fn whole_number(value: &Value, least: u32) -> Result<u32, NotAWholeNumber> {
    let refused = || NotAWholeNumber {
        least,
        found: shown(value),
    };
    let Value::Number(number) = value else {
        return Err(refused());
    };
    let whole = if let Some(whole) = number.as_u64() {
        u32::try_from(whole).ok()
    } else if number.is_i64() {
        None
    } else {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            // In range and whole, so the cast is exact.
            .map(|f| f as u32)
    };
    whole.filter(|whole| *whole >= least).ok_or_else(refused)
}

/// A value that is not a whole number in range ([`whole_number`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAWholeNumber {
    least: u32,
    found: String,
}

impl fmt::Display for NotAWholeNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected a whole number from {} to {}, got {}",
            self.least,
            u32::MAX,
            self.found
        )
    }
}

impl std::error::Error for NotAWholeNumber {}

/// `value` as JSON, cut short: an error message repeats what it refused, never all of it.
fn shown(value: &Value) -> String {
    const MOST: usize = 40;
    let text = value.to_string();
    if text.len() <= MOST {
        return text;
    }
    let mut end = MOST;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

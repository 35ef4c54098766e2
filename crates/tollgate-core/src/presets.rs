//! [`Preset`]: the OpenAI-compatible services tollgate knows by name, and how each differs from
//! OpenAI's own API.

use std::fmt;

/// A known OpenAI-compatible service: where it is, and what it does differently from OpenAI.
///
/// | preset | base URL | differs |
/// |---|---|---|
/// | `groq` | `https://api.groq.com/openai/v1` | answers 400 to `logprobs`, `top_logprobs`, `logit_bias`, `n` above 1 (refused by name first) and to `messages[].name` (left out); usage of a stream also under `x_groq.usage` |
/// | `mistral` | `https://api.mistral.ai/v1` | `seed` is `random_seed`; no `stream_options` (usage comes with a stream's last chunk); no log-probabilities (refused) |
/// | `deepseek` | `https://api.deepseek.com/v1` | cache reads as `prompt_cache_hit_tokens` (read as cached input) |
/// | `together` | `https://api.together.xyz/v1` | none |
/// | `fireworks` | `https://api.fireworks.ai/inference/v1` | none |
/// | `openrouter` | `https://openrouter.ai/api/v1` | none |
/// | `xai` | `https://api.x.ai/v1` | no `logit_bias`, `n` above 1 (refused) |
/// | `ollama` | `http://localhost:11434/v1` | no key |
/// | `vllm` | `http://localhost:8000/v1` | no key |
/// | `lmstudio` | `http://localhost:1234/v1` | no key; no `stream_options` |
///
/// ```
/// use tollgate_core::Preset;
///
/// let groq: Preset = "groq".parse().unwrap();
/// assert_eq!(groq.base_url(), "https://api.groq.com/openai/v1");
/// assert!(groq.refuses().contains(&"logit_bias"));
/// assert_eq!("groqq".parse::<Preset>().unwrap_err().to_string(), "unknown preset \"groqq\"; known: groq, mistral, deepseek, together, fireworks, openrouter, xai, ollama, vllm, lmstudio");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// Groq.
    Groq,
    /// Mistral AI's API.
    Mistral,
    /// DeepSeek.
    Deepseek,
    /// Together AI.
    Together,
    /// Fireworks AI.
    Fireworks,
    /// OpenRouter.
    Openrouter,
    /// xAI (Grok).
    Xai,
    /// Ollama's OpenAI-compatible API, on this machine.
    Ollama,
    /// vLLM's server, on this machine.
    Vllm,
    /// LM Studio's server, on this machine.
    Lmstudio,
}

/// How a service differs from OpenAI in what it takes, for a client to write requests it will
/// accept: see each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Quirks {
    /// Whether it takes `stream_options.include_usage` (without it, usage comes as the service
    /// sends it, or not at all).
    pub stream_options: bool,
    /// The name it takes `seed` under.
    pub seed_field: &'static str,
    /// Whether it refuses a message's `name` (left out, which changes no answer).
    pub drops_message_names: bool,
    /// How it writes `tool_choice: "required"`.
    pub required_tool_choice: &'static str,
}

impl Quirks {
    /// OpenAI's own API: no quirks.
    pub const OPENAI: Self = Self {
        stream_options: true,
        seed_field: "seed",
        drops_message_names: false,
        required_tool_choice: "required",
    };

    /// Whether these are OpenAI's own.
    pub fn is_openai(&self) -> bool {
        *self == Self::OPENAI
    }
}

impl Default for Quirks {
    fn default() -> Self {
        Self::OPENAI
    }
}

impl Preset {
    /// Every preset.
    pub const ALL: [Self; 10] = [
        Self::Groq,
        Self::Mistral,
        Self::Deepseek,
        Self::Together,
        Self::Fireworks,
        Self::Openrouter,
        Self::Xai,
        Self::Ollama,
        Self::Vllm,
        Self::Lmstudio,
    ];

    /// Its name in configuration (`groq`), also the name its client's errors go under.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Groq => "groq",
            Self::Mistral => "mistral",
            Self::Deepseek => "deepseek",
            Self::Together => "together",
            Self::Fireworks => "fireworks",
            Self::Openrouter => "openrouter",
            Self::Xai => "xai",
            Self::Ollama => "ollama",
            Self::Vllm => "vllm",
            Self::Lmstudio => "lmstudio",
        }
    }

    /// Where it is: the part before `/chat/completions`.
    pub const fn base_url(self) -> &'static str {
        match self {
            Self::Groq => "https://api.groq.com/openai/v1",
            Self::Mistral => "https://api.mistral.ai/v1",
            Self::Deepseek => "https://api.deepseek.com/v1",
            Self::Together => "https://api.together.xyz/v1",
            Self::Fireworks => "https://api.fireworks.ai/inference/v1",
            Self::Openrouter => "https://openrouter.ai/api/v1",
            Self::Xai => "https://api.x.ai/v1",
            Self::Ollama => "http://localhost:11434/v1",
            Self::Vllm => "http://localhost:8000/v1",
            Self::Lmstudio => "http://localhost:1234/v1",
        }
    }

    /// Whether it needs an API key (the local servers do not).
    pub const fn needs_key(self) -> bool {
        !matches!(self, Self::Ollama | Self::Vllm | Self::Lmstudio)
    }

    /// The request fields it answers with a 400: refused by name before anything is sent (`n`
    /// only above 1).
    pub const fn refuses(self) -> &'static [&'static str] {
        match self {
            Self::Groq => &["logprobs", "top_logprobs", "logit_bias", "n"],
            Self::Mistral => &["logprobs", "top_logprobs", "logit_bias"],
            Self::Xai => &["logit_bias", "n"],
            _ => &[],
        }
    }

    /// How it differs in what it takes.
    pub const fn quirks(self) -> Quirks {
        let openai = Quirks::OPENAI;
        match self {
            Self::Groq => Quirks {
                drops_message_names: true,
                ..openai
            },
            Self::Mistral => Quirks {
                stream_options: false,
                seed_field: "random_seed",
                required_tool_choice: "any",
                ..openai
            },
            Self::Lmstudio => Quirks {
                stream_options: false,
                ..openai
            },
            _ => openai,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no preset's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPreset(String);

impl fmt::Display for UnknownPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
        write!(
            f,
            "unknown preset {:?}; known: {}",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownPreset {}

impl std::str::FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(name: &str) -> Result<Self, UnknownPreset> {
        Self::ALL
            .into_iter()
            .find(|preset| preset.name() == name)
            .ok_or_else(|| UnknownPreset(name.to_owned()))
    }
}

impl<'de> serde::Deserialize<'de> for Preset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Preset {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

//! Why a caller's body cannot be read.

use std::fmt;

/// Why a caller's body cannot be read: the field at fault, when there is one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The field at fault (`max_tokens`, `messages[2].content`), when one is.
    pub field: Option<String>,
    /// What is wrong, naming the field first when there is one.
    pub message: String,
    /// `invalid_json` when the body is not the JSON its API takes.
    pub code: Option<&'static str>,
}

impl Refusal {
    /// `field` is wrong, for `reason`.
    pub fn field(field: &str, reason: &str) -> Self {
        Self {
            field: Some(field.to_owned()),
            message: format!("{field}: {reason}"),
            code: None,
        }
    }

    /// The body is not the JSON its API takes.
    pub fn json(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
            code: Some("invalid_json"),
        }
    }

    /// This refusal, naming `field` when given.
    #[must_use]
    pub fn at(mut self, field: Option<String>) -> Self {
        if field.is_some() {
            self.field = field;
        }
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

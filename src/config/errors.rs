//! `ConfigErrors`: every mistake in a configuration, each with its path.

use std::fmt;

use tollgate_core::ConfigError;

/// Every mistake found in a configuration, each with its path; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub(super) Vec<ConfigError>);

impl ConfigErrors {
    /// The mistakes, in the order of the document's sections.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Each mistake's path.
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(ConfigError::path).collect()
    }

    pub(crate) fn one(error: ConfigError) -> Self {
        Self(vec![error])
    }

    pub(crate) fn check(errors: Vec<ConfigError>) -> Result<(), Self> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self(errors))
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration ({}):",
            tollgate_core::counted(self.0.len() as u64, "mistake")
        )?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl FromIterator<ConfigError> for ConfigErrors {
    /// Mistakes found by a reader of more sections than the stack's (the gateway's `keys`), to be
    /// reported with the stack's own.
    fn from_iter<I: IntoIterator<Item = ConfigError>>(errors: I) -> Self {
        Self(errors.into_iter().collect())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self::one(error)
    }
}

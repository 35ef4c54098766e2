//! How healthy a component, a check or a whole report is.

use std::fmt;

use serde::Serialize;

/// How healthy something is; serialized as `pass`, `warn` or `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Status {
    /// Working (`pass`).
    #[serde(rename = "pass")]
    Healthy,
    /// Working, but not well (`warn`).
    #[serde(rename = "warn")]
    Degraded,
    /// Not working (`fail`).
    #[serde(rename = "fail")]
    Unhealthy,
}

impl Status {
    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Healthy,
            1 => Self::Degraded,
            _ => Self::Unhealthy,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        })
    }
}

//! What layer configurations share: a validation error that names the field, and human durations.

use std::{fmt, time::Duration};

/// A configuration value that was refused, with the path of the field and the reason.
///
/// Layers validate their configuration when it is built, never on the first request; the facade
/// prefixes each layer's errors with its section (`retry.multiplier: must be at least 1.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    reason: String,
}

impl ConfigError {
    /// An error for the field at `path` (dotted, e.g. `budget.ratio`).
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The dotted path of the refused field.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Why it was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The same error, one section deeper: `under("retry")` turns `multiplier` into `retry.multiplier`.
    #[must_use]
    pub fn under(mut self, section: &str) -> Self {
        self.path = if self.path.is_empty() {
            section.to_owned()
        } else {
            format!("{section}.{}", self.path)
        };
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Durations written for people: `250ms`, `1.5s`, `1m`, `1h30m`, `1d`.
///
/// Use with serde as `#[serde(with = "tollgate_core::duration")]` (or `duration::option` for an
/// `Option<Duration>`). A bare number is refused rather than guessed at: seconds or milliseconds?
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::duration;
///
/// assert_eq!(duration::parse("1h30m"), Ok(Duration::from_secs(5_400)));
/// assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1_500)));
/// assert_eq!(duration::format(Duration::from_secs(90)), "1m30s");
/// assert!(duration::parse("60").unwrap_err().contains("unit"));
/// ```
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    const UNITS: [(&str, u128); 7] = [
        ("ns", 1),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ];

    /// Parses a duration such as `250ms`, `1.5s`, `1h30m` or `1d`.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with the text.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "empty duration; write e.g. \"500ms\", \"30s\", \"1m\", \"1h\" or \"1d\"".into(),
            );
        }
        let mut rest = text;
        let mut nanos: u128 = 0;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            if number.is_empty() {
                return Err(format!(
                    "invalid duration {text:?}: expected a number before {unit:?}"
                ));
            }
            let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(if unit.is_empty() {
                    format!("invalid duration {text:?}: add a unit (ms, s, m, h or d)")
                } else {
                    format!(
                        "invalid duration {text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
                    )
                });
            };
            let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
            let invalid = || format!("invalid duration {text:?}: {number:?} is not a number");
            if whole.is_empty() || frac.contains('.') {
                return Err(invalid());
            }
            let whole: u128 = whole.parse().map_err(|_| invalid())?;
            let mut part = whole
                .checked_mul(scale)
                .ok_or_else(|| format!("duration {text:?} is too long"))?;
            let mut unit_scale = scale;
            for digit in frac.bytes() {
                if !digit.is_ascii_digit() {
                    return Err(invalid());
                }
                unit_scale /= 10;
                part += u128::from(digit - b'0') * unit_scale;
            }
            nanos = nanos
                .checked_add(part)
                .ok_or_else(|| format!("duration {text:?} is too long"))?;
            rest = after;
        }
        let secs = u64::try_from(nanos / 1_000_000_000)
            .map_err(|_| format!("duration {text:?} is too long"))?;
        Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
    }

    /// Formats a duration the way [`parse`] reads it, largest units first (`1h30m`, `250ms`).
    pub fn format(duration: Duration) -> String {
        let mut nanos = duration.as_nanos();
        if nanos == 0 {
            return "0s".into();
        }
        let mut out = String::new();
        for (name, scale) in UNITS.iter().rev() {
            if nanos >= *scale {
                out.push_str(&format!("{}{name}", nanos / scale));
                nanos %= scale;
            }
        }
        out
    }

    /// Serializes as text, e.g. `"1m30s"`.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*duration))
    }

    /// Deserializes from text, e.g. `"1m30s"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        parse(&text).map_err(D::Error::custom)
    }

    /// The same for `Option<Duration>` (`null` or absent is `None`; pair with `#[serde(default)]`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

        /// Serializes `Some` as text and `None` as null.
        pub fn serialize<S: Serializer>(
            duration: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match duration {
                Some(duration) => super::serialize(duration, serializer),
                None => serializer.serialize_none(),
            }
        }

        /// Deserializes text or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?
                .map(|text| super::parse(&text).map_err(D::Error::custom))
                .transpose()
        }
    }
}

/// Checks a duration is not zero.
///
/// # Errors
///
/// A [`ConfigError`] for `path` when it is.
pub fn non_zero(path: &str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(path, "must be greater than 0"))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::duration::{format, parse};
    use std::time::Duration;

    #[test]
    fn durations_parse_and_format() {
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("1s", Duration::from_secs(1)),
            ("1.25s", Duration::from_millis(1_250)),
            ("1m", Duration::from_secs(60)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1d", Duration::from_secs(86_400)),
            ("10us", Duration::from_micros(10)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
            assert_eq!(parse(&format(expected)), Ok(expected), "{text}");
        }
        assert_eq!(format(Duration::from_millis(90_500)), "1m30s500ms");
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for (text, needle) in [
            ("", "empty"),
            ("60", "add a unit"),
            ("5 minutes", "unknown unit"),
            ("1w", "unknown unit"),
            ("ms", "expected a number"),
            ("1.2.3s", "not a number"),
            ("-1s", "expected a number"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}

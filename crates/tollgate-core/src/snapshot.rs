//! What providers say in their headers about their own limits: OpenAI's `x-ratelimit-*` and
//! Anthropic's `anthropic-ratelimit-*`, as one typed snapshot that clients attach to answers and
//! errors, and that a router reads to steer traffic before the provider says no.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// One limit's state as a provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitWindow {
    /// The limit.
    pub limit: Option<u64>,
    /// What is left of it.
    pub remaining: Option<u64>,
    /// How long until it is full again.
    pub reset: Option<Duration>,
}

impl LimitWindow {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The rate-limit headers of one response (or error), as a typed snapshot. Attached to responses
/// and errors as an extension when the provider sent any.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use tollgate_core::RateLimitSnapshot;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("x-ratelimit-limit-requests", "500".parse().unwrap());
/// headers.insert("x-ratelimit-remaining-requests", "499".parse().unwrap());
/// headers.insert("x-ratelimit-reset-requests", "1m6.5s".parse().unwrap());
/// let snapshot = RateLimitSnapshot::from_headers(&headers, SystemTime::now()).unwrap();
/// assert_eq!(snapshot.requests.remaining, Some(499));
/// assert_eq!(snapshot.requests.reset, Some(Duration::from_millis(66_500)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitSnapshot {
    /// Requests.
    pub requests: LimitWindow,
    /// Tokens (input and output together).
    pub tokens: LimitWindow,
    /// Input tokens (Anthropic).
    pub input_tokens: LimitWindow,
    /// Output tokens (Anthropic).
    pub output_tokens: LimitWindow,
}

impl RateLimitSnapshot {
    /// Reads OpenAI-style (`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as
    /// durations like `6m0s`) and Anthropic-style (`anthropic-ratelimit-{requests,tokens,
    /// input-tokens,output-tokens}-{limit,remaining,reset}`, resets as RFC 3339 times read against
    /// `now`) headers. `None` when there are none.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Option<Self> {
        // One pass over the headers: most answers carry none of these, and each lookup by name
        // would hash and compare a name that is not there.
        let mut openai = [LimitWindow::default(); 2];
        let mut anthropic = [LimitWindow::default(); 4];
        for (name, value) in headers {
            // The window a header is about, the field it gives, and whether its reset is OpenAI's
            // duration (else Anthropic's time).
            let name = name.as_str();
            let (window, field, openai_reset) =
                if let Some(rest) = name.strip_prefix("x-ratelimit-") {
                    let Some((field, what)) = rest.split_once('-') else {
                        continue;
                    };
                    let Some(at) = ["requests", "tokens"].iter().position(|w| *w == what) else {
                        continue;
                    };
                    (&mut openai[at], field, true)
                } else if let Some(rest) = name.strip_prefix("anthropic-ratelimit-") {
                    let Some((what, field)) = rest.rsplit_once('-') else {
                        continue;
                    };
                    let windows = ["requests", "tokens", "input-tokens", "output-tokens"];
                    let Some(at) = windows.iter().position(|w| *w == what) else {
                        continue;
                    };
                    (&mut anthropic[at], field, false)
                } else {
                    continue;
                };
            let Ok(value) = value.to_str().map(str::trim) else {
                continue;
            };
            match field {
                "limit" => window.limit = value.parse().ok(),
                "remaining" => window.remaining = value.parse().ok(),
                "reset" if openai_reset => window.reset = go_duration(value),
                "reset" => {
                    window.reset = parse_rfc3339(value)
                        .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO));
                }
                _ => {}
            }
        }
        let either = |a: LimitWindow, b: LimitWindow| if a.is_empty() { b } else { a };
        let snapshot = Self {
            requests: either(openai[0], anthropic[0]),
            tokens: either(openai[1], anthropic[1]),
            input_tokens: anthropic[2],
            output_tokens: anthropic[3],
        };
        (snapshot != Self::default()).then_some(snapshot)
    }
}

impl RateLimitSnapshot {
    /// Every window, requests first.
    pub fn windows(&self) -> [&LimitWindow; 4] {
        [
            &self.requests,
            &self.tokens,
            &self.input_tokens,
            &self.output_tokens,
        ]
    }

    /// When some window has nothing left: how long until the last such window is full again
    /// (`Some(ZERO)` when the provider gave no reset). `None` while every window has room.
    pub fn exhausted_for(&self) -> Option<Duration> {
        self.windows()
            .into_iter()
            .filter(|window| window.remaining == Some(0))
            .map(|window| window.reset.unwrap_or_default())
            .max()
    }

    /// The smallest share of a limit still left, `remaining / limit` over the windows that give
    /// both, with how long until that window resets. `None` when no window gives both.
    pub fn lowest_share(&self) -> Option<(f64, Option<Duration>)> {
        self.windows()
            .into_iter()
            .filter_map(|window| {
                let limit = window.limit.filter(|limit| *limit > 0)?;
                let share = window.remaining? as f64 / limit as f64;
                Some((share.min(1.0), window.reset))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
    }
}

/// A Go-style duration as OpenAI sends resets: `1s`, `6m0s`, `1h2m3.5s`, `20ms`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "h" => 3_600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit..];
    }
    Some(Duration::from_secs_f64(total))
}

/// An RFC 3339 time (`2026-11-23T17:00:30Z`, `...30.5+01:00`).
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        let padded = format!("{:0<9}", &fraction[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if rest.len() != 6 || &rest[3..4] != ":" {
                return None;
            }
            sign * (hours * 3_600 + minutes * 60)
        }
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset;
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("soon"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn both_kinds_of_header_in_one_pass() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "application/json"),
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", " 499 "),
            ("x-ratelimit-reset-requests", "1m6.5s"),
            ("x-ratelimit-limit-tokens-day", "9"),
            ("x-ratelimit-remaining-widgets", "9"),
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-tokens-remaining", "7000"),
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-output-tokens-remaining", "0"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "1970-01-01T00:00:10Z",
            ),
            ("anthropic-ratelimit-output-tokens-later", "1"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        let now = UNIX_EPOCH + Duration::from_secs(4);
        let snapshot = RateLimitSnapshot::from_headers(&headers, now).unwrap();
        // OpenAI's requests window wins over Anthropic's; Anthropic's tokens window fills in.
        assert_eq!(
            snapshot.requests,
            LimitWindow {
                limit: Some(500),
                remaining: Some(499),
                reset: Some(Duration::from_millis(66_500)),
            }
        );
        assert_eq!(
            snapshot.tokens,
            LimitWindow {
                remaining: Some(7000),
                ..LimitWindow::default()
            }
        );
        assert_eq!(snapshot.input_tokens.limit, Some(40_000));
        assert_eq!(
            snapshot.output_tokens,
            LimitWindow {
                remaining: Some(0),
                reset: Some(Duration::from_secs(6)),
                ..LimitWindow::default()
            }
        );
        let mut none = HeaderMap::new();
        none.insert("x-ratelimit-limit-widgets", "3".parse().unwrap());
        assert_eq!(RateLimitSnapshot::from_headers(&none, now), None);
    }

    #[test]
    fn rfc3339_times() {
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            at("2026-11-23T17:00:30Z"),
            Some(Duration::from_secs(1_795_453_230))
        );
        assert_eq!(
            at("2026-11-23T18:00:30.25+01:00"),
            Some(Duration::from_millis(1_795_453_230_250))
        );
        assert_eq!(at("2026-13-01T00:00:00Z"), None);
        assert_eq!(at("yesterday"), None);
    }
}

//! [`Degrade`]: what a budget asks of a gateway when little of it is left: to send calls to a
//! cheaper role instead of refusing them later. The limiter keeps the budget; a gateway reads
//! what is left ([`Limiter::status`](crate::Limiter::status)) and moves the call.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Once less than `below` of a period's budget is left, calls go to the role `to` instead:
/// `degrade: { below: "20%", to: cheap }`.
///
/// ```
/// use tollgate_ratelimit::Degrade;
///
/// let degrade: Degrade = serde_json::from_str(r#"{ "below": "20%", "to": "cheap" }"#).unwrap();
/// assert_eq!(degrade.below.basis_points(), 2_000);
/// assert!(degrade.below.is_reached(199, 1_000) && !degrade.below.is_reached(200, 1_000));
/// assert!(serde_json::from_str::<Degrade>(r#"{ "below": "120%", "to": "cheap" }"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Degrade {
    /// The share of the period's budget under which calls are moved (`"20%"`).
    pub below: Share,
    /// The role they are moved to.
    pub to: String,
}

/// A share of a whole, more than 0 % and less than 100 %, written `"20%"` or `"12.5%"` (to a
/// hundredth of a percent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Share(u32);

impl Share {
    /// The share in hundredths of a percent (`20%` is 2,000).
    pub fn basis_points(self) -> u32 {
        self.0
    }

    /// Whether `left` of `whole` is less than this share of it.
    pub fn is_reached(self, left: u64, whole: u64) -> bool {
        u128::from(left) * 10_000 < u128::from(whole) * u128::from(self.0)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let number = text
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| format!("{text:?}: write a percentage such as \"20%\""))?
            .trim();
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (number, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !fraction.is_none_or(|f| digits(f) && f.len() <= 2) {
            return Err(format!(
                "{text:?}: write a percentage such as \"20%\" or \"12.5%\" (two decimals at most)"
            ));
        }
        let whole: u32 = whole
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?;
        let hundredths: u32 = format!("{:0<2}", fraction.unwrap_or(""))
            .parse()
            .unwrap_or(0);
        let points = whole.saturating_mul(100).saturating_add(hundredths);
        if points == 0 || points >= 10_000 {
            return Err(format!("{text:?}: must be more than 0% and less than 100%"));
        }
        Ok(Self(points))
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 % 100 {
            0 => write!(f, "{}%", self.0 / 100),
            rest if rest % 10 == 0 => write!(f, "{}.{}%", self.0 / 100, rest / 10),
            rest => write!(f, "{}.{rest:02}%", self.0 / 100),
        }
    }
}

impl Serialize for Share {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn shares_read_and_write_as_percentages() {
        for (text, points, shown) in [
            ("20%", 2_000, "20%"),
            ("12.5%", 1_250, "12.5%"),
            (" 0.01% ", 1, "0.01%"),
            ("99.99%", 9_999, "99.99%"),
        ] {
            let share = Share::parse(text).unwrap();
            assert_eq!(
                (share.basis_points(), share.to_string()),
                (points, shown.to_owned())
            );
        }
        for bad in ["20", "0%", "100%", "-5%", "1.234%", "%", "x%", "5.%"] {
            assert!(Share::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_share_written_reads_back(points in 1u32..10_000) {
            let share = Share(points);
            prop_assert_eq!(Share::parse(&share.to_string()).unwrap(), share);
        }

        #[test]
        fn a_share_is_reached_only_below_it(points in 1u32..10_000, whole in 1u64..1_000_000_000, left in 0u64..1_000_000_000) {
            let left = left.min(whole);
            let exact = (left as f64) / (whole as f64) < f64::from(points) / 10_000.0;
            let reached = Share(points).is_reached(left, whole);
            // Exact arithmetic agrees with a float's everywhere but at the boundary itself.
            if ((left as f64) / (whole as f64) - f64::from(points) / 10_000.0).abs() > 1e-9 {
                prop_assert_eq!(reached, exact);
            }
        }
    }
}

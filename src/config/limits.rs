//! `Limits`: one provider's or tenant's quota, written the way people say it.

use std::time::Duration;

use serde::Deserialize;
use tollgate_core::ConfigError;
use tollgate_ratelimit::{Amount, Dimension, Quota, Tier, TierConfig};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);
const MONTH: Duration = Duration::from_secs(30 * 86_400);

/// One quota: requests, tokens and dollars per minute, hour, day or month, plus any other tiers.
/// Every limit given must hold; unknown fields are errors.
///
/// ```yaml
/// per_minute: 60              # requests
/// tokens_per_hour: 200000
/// cost_per_day: "5.00"        # US dollars; a budget
/// tiers:                      # anything else, in the rate limiter's own shape
///   - { requests: 10, per: 1s }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    pub per_minute: Option<u64>,
    /// Requests per hour.
    pub per_hour: Option<u64>,
    /// Requests per day.
    pub per_day: Option<u64>,
    /// Tokens (prompt and answer) per minute.
    pub tokens_per_minute: Option<u64>,
    /// Tokens per hour.
    pub tokens_per_hour: Option<u64>,
    /// Tokens per day.
    pub tokens_per_day: Option<u64>,
    /// US dollars per day: `"5.00"` or `5`.
    pub cost_per_day: Option<Amount>,
    /// US dollars per 30 days.
    pub cost_per_month: Option<Amount>,
    /// More tiers, each `{ requests | tokens | cost, per, burst }`.
    pub tiers: Vec<TierConfig>,
}

impl Limits {
    /// The quota, or every mistake in it, each with its path under `at`.
    pub(crate) fn quota(&self, at: &str) -> Result<Quota, Vec<ConfigError>> {
        let whole = |n: Option<u64>| n.map(|n| Amount::Whole(i64::try_from(n).unwrap_or(i64::MAX)));
        let shorthand: [(&str, Dimension, Option<Amount>, Duration); 8] = [
            (
                "per_minute",
                Dimension::Requests,
                whole(self.per_minute),
                MINUTE,
            ),
            ("per_hour", Dimension::Requests, whole(self.per_hour), HOUR),
            ("per_day", Dimension::Requests, whole(self.per_day), DAY),
            (
                "tokens_per_minute",
                Dimension::Tokens,
                whole(self.tokens_per_minute),
                MINUTE,
            ),
            (
                "tokens_per_hour",
                Dimension::Tokens,
                whole(self.tokens_per_hour),
                HOUR,
            ),
            (
                "tokens_per_day",
                Dimension::Tokens,
                whole(self.tokens_per_day),
                DAY,
            ),
            (
                "cost_per_day",
                Dimension::Cost,
                self.cost_per_day.clone(),
                DAY,
            ),
            (
                "cost_per_month",
                Dimension::Cost,
                self.cost_per_month.clone(),
                MONTH,
            ),
        ];
        let mut errors = Vec::new();
        // Each tier with the path a mistake in it is reported under.
        let mut tiers: Vec<(String, Tier)> = Vec::new();
        for (field, dimension, amount, per) in shorthand {
            let Some(amount) = amount else { continue };
            let path = format!("{at}.{field}");
            if amount == Amount::Whole(0) {
                errors.push(ConfigError::new(path, "must be > 0"));
                continue;
            }
            let mut tier = TierConfig {
                requests: None,
                tokens: None,
                cost: None,
                per,
                burst: None,
            };
            *match dimension {
                Dimension::Requests => &mut tier.requests,
                Dimension::Tokens => &mut tier.tokens,
                Dimension::Cost => &mut tier.cost,
            } = Some(amount);
            match tier.to_tier() {
                Ok(tier) => tiers.push((path, tier)),
                Err(e) => errors.push(ConfigError::new(path, e.reason())),
            }
        }
        for (i, tier) in self.tiers.iter().enumerate() {
            let path = format!("{at}.tiers[{i}]");
            match tier.to_tier() {
                Ok(built) => tiers.push((path, built)),
                Err(e) => errors.push(e.under(&path)),
            }
        }
        if tiers.is_empty() && errors.is_empty() {
            errors.push(ConfigError::new(
                at,
                "set at least one limit (per_minute, tokens_per_hour, cost_per_day, tiers, ...)",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let paths: Vec<(String, bool, Dimension)> = tiers
            .iter()
            .enumerate()
            .map(|(i, (path, tier))| {
                (
                    path.clone(),
                    i >= tiers.len() - self.tiers.len(),
                    tier.dimension(),
                )
            })
            .collect();
        Quota::new(tiers.into_iter().map(|(_, tier)| tier)).map_err(|e| {
            // Quota names tiers by index (`tiers[2].burst`); say which field that was. A
            // shorthand field is its own path; a listed tier's `limit` is its dimension's field.
            let (index, suffix) = e
                .path()
                .strip_prefix("tiers[")
                .and_then(|rest| rest.split_once(']'))
                .map_or((None, ""), |(i, suffix)| (i.parse::<usize>().ok(), suffix));
            let path = match index.and_then(|i| paths.get(i)) {
                Some((path, true, dimension)) if suffix == ".limit" => {
                    format!("{path}.{}", dimension_field(*dimension))
                }
                Some((path, true, _)) => format!("{path}{suffix}"),
                Some((path, false, _)) => path.clone(),
                None => at.to_owned(),
            };
            vec![ConfigError::new(path, e.reason())]
        })
    }

    /// The dollar tiers, for the cost report: `(period, limit)`.
    pub(crate) fn budgets(&self) -> Vec<(Duration, tollgate_core::MicroUsd)> {
        self.quota("")
            .map(|quota| {
                quota
                    .tiers()
                    .iter()
                    .filter(|tier| tier.dimension() == Dimension::Cost)
                    .map(|tier| (tier.period(), tollgate_core::MicroUsd(tier.limit())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether any tier counts dollars.
    pub(crate) fn has_budget(&self) -> bool {
        self.cost_per_day.is_some()
            || self.cost_per_month.is_some()
            || self.tiers.iter().any(|tier| tier.cost.is_some())
    }
}

fn dimension_field(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Requests => "requests",
        Dimension::Tokens => "tokens",
        Dimension::Cost => "cost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(yaml: &str) -> Vec<String> {
        let limits: Limits = serde_yaml_ng::from_str(yaml).unwrap();
        limits
            .quota("q")
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_mistake_is_named_by_its_field() {
        assert_eq!(
            paths("{ per_minute: 0, tokens_per_hour: 0 }"),
            [
                "q.per_minute: must be > 0",
                "q.tokens_per_hour: must be > 0"
            ]
        );
        let contradiction = paths("{ per_minute: 100, per_hour: 50 }");
        assert_eq!(contradiction.len(), 1);
        assert!(
            contradiction[0].starts_with("q.per_hour: "),
            "{contradiction:?}"
        );
        assert_eq!(
            paths("{}"),
            ["q: set at least one limit (per_minute, tokens_per_hour, cost_per_day, tiers, ...)"]
        );
        assert_eq!(
            paths("{ cost_per_day: \"-1\" }")[0].split(':').next(),
            Some("q.cost_per_day")
        );
        assert_eq!(
            paths("{ tiers: [ { requests: 5, per: 1m, burst: 6 } ] }")[0]
                .split(':')
                .next(),
            Some("q.tiers[0].burst")
        );
    }

    #[test]
    fn shorthand_becomes_tiers() {
        let limits: Limits = serde_yaml_ng::from_str(
            "{ per_minute: 60, tokens_per_hour: 1000, cost_per_day: \"2.50\" }",
        )
        .unwrap();
        let quota = limits.quota("q").unwrap();
        let tiers: Vec<_> = quota
            .tiers()
            .iter()
            .map(|t| (t.dimension(), t.limit(), t.period()))
            .collect();
        assert_eq!(
            tiers,
            [
                (Dimension::Requests, 60, MINUTE),
                (Dimension::Tokens, 1_000, HOUR),
                (Dimension::Cost, 2_500_000, DAY),
            ]
        );
        assert_eq!(
            limits.budgets(),
            [(DAY, tollgate_core::MicroUsd(2_500_000))]
        );
    }
}

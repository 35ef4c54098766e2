//! How a quota is written: tiers (`{ requests: 60, per: 1m }`) and [`Limits`], the shorthand
//! people say (`per_minute: 60`, `cost_per_day: "5.00"`). Both become a [`Quota`] through one
//! function, which names every mistake by the field it was written in.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_core::{ConfigError, MicroUsd, duration};

use crate::{
    calendar::{Calendar, Period},
    quota::{Dimension, Quota, Tier},
};

/// A number in a tier: a whole count, or (for cost) dollars as a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    /// A whole number (for cost: whole dollars).
    Whole(i64),
    /// A decimal string of dollars, e.g. `"2.50"` (cost only).
    Dollars(String),
}

/// One tier: exactly one of `requests`, `tokens` or `cost`, a period `per`, and an optional `burst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Requests per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Amount>,
    /// Tokens per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Amount>,
    /// Dollars per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Amount>,
    /// The period (`"1m"`, `"1h"`, `"1d"`, `"30d"`).
    #[serde(with = "duration")]
    pub per: Duration,
    /// At most this much at once (default: the whole limit); dollars for a cost tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<Amount>,
}

impl TierConfig {
    /// The tier this describes.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose path is the offending field (`requests`, `burst`, ...), or empty
    /// when not exactly one of `requests`, `tokens` and `cost` is given.
    pub fn to_tier(&self) -> Result<Tier, ConfigError> {
        let given = [
            ("requests", Dimension::Requests, &self.requests),
            ("tokens", Dimension::Tokens, &self.tokens),
            ("cost", Dimension::Cost, &self.cost),
        ];
        let mut set = given.iter().filter(|(_, _, value)| value.is_some());
        let (Some((field, dimension, Some(limit))), None) = (set.next(), set.next()) else {
            return Err(ConfigError::new(
                "",
                "give exactly one of requests, tokens or cost",
            ));
        };
        let limit = amount(field, *dimension, limit)?;
        let mut tier = Tier::new(*dimension, limit, self.per);
        if let Some(burst) = &self.burst {
            tier = tier.with_burst(amount("burst", *dimension, burst)?);
        }
        Ok(tier)
    }
}

fn amount(field: &str, dimension: Dimension, value: &Amount) -> Result<u64, ConfigError> {
    match (dimension, value) {
        (_, Amount::Whole(n)) if *n <= 0 => Err(ConfigError::new(
            field,
            format!("must be positive, got {n}"),
        )),
        (Dimension::Cost, Amount::Whole(n)) => Ok(MicroUsd::from_dollars(*n as u64).0),
        (Dimension::Cost, Amount::Dollars(text)) => match text.parse::<MicroUsd>() {
            Ok(MicroUsd(0)) => Err(ConfigError::new(field, "must be more than $0")),
            Ok(micros) => Ok(micros.0),
            Err(e) => Err(ConfigError::new(field, e.to_string())),
        },
        (_, Amount::Whole(n)) => Ok(*n as u64),
        (_, Amount::Dollars(text)) => Err(ConfigError::new(
            field,
            format!("expected a whole number, got {text:?}"),
        )),
    }
}

/// A budget that is a hard cap per calendar period: at most `limit` dollars within each day, week
/// or month, in UTC or a named time zone, refilled whole when the next period begins.
///
/// ```yaml
/// budgets:
///   - { limit: "500", period: month }
///   - { limit: "40", period: day, time_zone: Europe/Paris }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Dollars per period: `"500"`, `"2.50"` or `500`.
    pub limit: Amount,
    /// `day`, `week` (from Monday) or `month`.
    pub period: Period,
    /// An IANA time zone (`Europe/Paris`) whose midnights bound the periods; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Where calls go once little of the period's budget is left (`{ below: "20%", to: cheap }`),
    /// at the gateway; without it they are refused once it is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degrade: Option<crate::Degrade>,
}

impl BudgetConfig {
    /// The calendar tier this budget is, or its mistake, named by field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] whose path is `limit` or `time_zone`.
    pub fn to_tier(&self) -> Result<Tier, ConfigError> {
        let limit = amount("limit", Dimension::Cost, &self.limit)?;
        let calendar = match &self.time_zone {
            None => Calendar::utc(self.period),
            Some(zone) => Calendar::in_zone(self.period, zone).map_err(|e| e.under("time_zone"))?,
        };
        if let Some(degrade) = &self.degrade
            && degrade.to.trim().is_empty()
        {
            return Err(ConfigError::new("degrade.to", "name the role calls go to"));
        }
        Ok(Tier::calendar(Dimension::Cost, limit, calendar))
    }
}

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u64>,
    /// Requests per hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u64>,
    /// Requests per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u64>,
    /// Tokens (prompt and answer) per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Tokens per hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_hour: Option<u64>,
    /// Tokens per day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_day: Option<u64>,
    /// US dollars per day: `"5.00"` or `5`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_per_day: Option<Amount>,
    /// US dollars per 30 days, refilled continuously (a rate, not a calendar month: see
    /// `budgets` for a hard cap per calendar month).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_per_month: Option<Amount>,
    /// Hard caps per calendar day, week or month: `[{ limit: "500", period: month }]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetConfig>,
    /// More tiers, each `{ requests | tokens | cost, per, burst }`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierConfig>,
}

impl Limits {
    /// The quota, or every mistake in it, each with its path under `at`.
    ///
    /// # Errors
    ///
    /// Every mistake, each with its path under `at` (`at.per_minute`, `at.tiers[1].burst`).
    pub fn quota(&self, at: &str) -> Result<Quota, Vec<ConfigError>> {
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
        let mut written = Vec::new();
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
                Ok(tier) => written.push(Written::field(path, tier)),
                Err(e) => errors.push(ConfigError::new(path, e.reason())),
            }
        }
        let listed = self
            .tiers
            .iter()
            .enumerate()
            .map(|(i, tier)| (format!("{at}.tiers[{i}]"), tier));
        match listed_tiers(listed) {
            Ok(tiers) => written.extend(tiers),
            Err(mistakes) => errors.extend(mistakes),
        }
        for (i, budget) in self.budgets.iter().enumerate() {
            let path = format!("{at}.budgets[{i}]");
            match budget.to_tier() {
                Ok(tier) => written.push(Written {
                    path,
                    listed: true,
                    tier,
                }),
                Err(e) => errors.push(e.under(&path)),
            }
        }
        if written.is_empty() && errors.is_empty() {
            errors.push(ConfigError::new(
                at,
                "set at least one limit (per_minute, tokens_per_hour, cost_per_day, budgets, tiers, ...)",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        quota_of(written, at).map_err(|e| vec![e])
    }

    /// The dollar tiers (budgets, rolling and calendar), none when the quota is not valid.
    pub fn budget_tiers(&self) -> Vec<Tier> {
        self.quota("")
            .map(|quota| {
                quota
                    .tiers()
                    .iter()
                    .filter(|tier| tier.dimension() == Dimension::Cost)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether any tier counts dollars.
    pub fn has_budget(&self) -> bool {
        self.cost_per_day.is_some()
            || self.cost_per_month.is_some()
            || !self.budgets.is_empty()
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

/// A tier with where it was written: a shorthand field (`at.per_minute`) is the tier, while a
/// listed tier (`at.tiers[1]`) has fields of its own.
struct Written {
    path: String,
    listed: bool,
    tier: Tier,
}

impl Written {
    fn field(path: String, tier: Tier) -> Self {
        Self {
            path,
            listed: false,
            tier,
        }
    }
}

/// The tiers of a list, each at its path, or every mistake in them.
fn listed_tiers<'a>(
    tiers: impl Iterator<Item = (String, &'a TierConfig)>,
) -> Result<Vec<Written>, Vec<ConfigError>> {
    let mut written = Vec::new();
    let mut errors = Vec::new();
    for (path, tier) in tiers {
        match tier.to_tier() {
            Ok(tier) => written.push(Written {
                path,
                listed: true,
                tier,
            }),
            Err(e) => errors.push(e.under(&path)),
        }
    }
    if errors.is_empty() {
        Ok(written)
    } else {
        Err(errors)
    }
}

/// The quota a list of tiers makes (a scope's `tiers`, at paths `tiers[i]`).
pub(crate) fn tiers_quota(tiers: &[TierConfig]) -> Result<Quota, ConfigError> {
    let listed = tiers
        .iter()
        .enumerate()
        .map(|(i, tier)| (format!("tiers[{i}]"), tier));
    let written = listed_tiers(listed).map_err(|mut errors| errors.remove(0))?;
    quota_of(written, "")
}

/// The quota of tiers as written, its mistakes named by the field they were written in: the
/// quota names a tier by its index and its limit `limit`, which in configuration is the tier's
/// shorthand field, or a listed tier's `requests`, `tokens` or `cost`.
fn quota_of(written: Vec<Written>, at: &str) -> Result<Quota, ConfigError> {
    let places: Vec<(String, bool, &str)> = written
        .iter()
        .map(|w| {
            let limit = match w.tier.calendar_period() {
                Some(_) => "limit",
                None => dimension_field(w.tier.dimension()),
            };
            (w.path.clone(), w.listed, limit)
        })
        .collect();
    Quota::new(written.into_iter().map(|w| w.tier)).map_err(|e| {
        let (index, suffix) = e
            .path()
            .strip_prefix("tiers[")
            .and_then(|rest| rest.split_once(']'))
            .map_or((None, ""), |(i, suffix)| (i.parse::<usize>().ok(), suffix));
        match index.and_then(|i| places.get(i)) {
            Some((path, true, limit)) if suffix == ".limit" => {
                ConfigError::new(format!("{path}.{limit}"), e.reason())
            }
            Some((path, true, _)) => ConfigError::new(format!("{path}{suffix}"), e.reason()),
            Some((path, false, _)) => ConfigError::new(path.clone(), e.reason()),
            None if at.is_empty() => e,
            None => e.under(at),
        }
    })
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
            [
                "q: set at least one limit (per_minute, tokens_per_hour, cost_per_day, budgets, tiers, ...)"
            ]
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
        let budgets = limits.budget_tiers();
        assert_eq!(budgets.len(), 1);
        assert_eq!((budgets[0].period(), budgets[0].limit()), (DAY, 2_500_000));
    }
}

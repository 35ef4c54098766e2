//! Model prices and the cost of a call, in integer micro-dollars (never floats for money).

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::Usage;

/// An amount of US dollars in millionths ($1 = 1,000,000 µ$).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MicroUsd(pub u64);

impl MicroUsd {
    /// Zero dollars.
    pub const ZERO: Self = Self(0);

    /// Whole dollars.
    pub const fn from_dollars(dollars: u64) -> Self {
        Self(dollars.saturating_mul(1_000_000))
    }

    /// Addition that stops at the maximum instead of wrapping.
    #[must_use]
    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for MicroUsd {
    /// `$1.234567`: exact, six decimals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// The error for a price that is not a plain non-negative decimal with at most six decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPrice(String);

impl fmt::Display for InvalidPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid price {:?}: expected US dollars as a non-negative decimal with at most 6 decimal places, e.g. \"2.50\"",
            self.0
        )
    }
}

impl std::error::Error for InvalidPrice {}

impl FromStr for MicroUsd {
    type Err = InvalidPrice;

    /// Parses dollars written as a decimal (`"2.50"`, `"0.075"`, `"15"`) without going through floats.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidPrice(text.to_owned());
        let (whole, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 6 {
            return Err(invalid());
        }
        let whole: u64 = whole.parse().map_err(|_| invalid())?;
        let frac: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse::<u64>().map_err(|_| invalid())? * 10_u64.pow(6 - frac.len() as u32)
        };
        whole
            .checked_mul(1_000_000)
            .and_then(|micros| micros.checked_add(frac))
            .map(Self)
            .ok_or_else(invalid)
    }
}

/// What one model costs, in micro-dollars per million tokens.
///
/// Prompt tokens read from the provider's prompt cache and those written to it have rates of
/// their own when the provider prices them apart; absent, they cost the input rate.
///
/// ```
/// use tollgate_core::{MicroUsd, ModelPrice, Usage};
///
/// let price = ModelPrice::per_million("3.00", "15.00").unwrap()
///     .with_cached_input("0.30".parse().unwrap())
///     .with_cache_write("3.75".parse().unwrap());
/// // 1,000 cached and 200 uncached prompt tokens, 50 answer tokens:
/// // 1,000 × $0.30/M + 200 × $3.00/M + 50 × $15.00/M = $0.0003 + $0.0006 + $0.00075
/// let usage = Usage::new(1_200, 50).with_cached_input(1_000);
/// assert_eq!(price.cost(usage), MicroUsd(1_650));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelPrice {
    /// Price of one million prompt tokens.
    pub input_per_mtok: MicroUsd,
    /// Price of one million generated tokens.
    pub output_per_mtok: MicroUsd,
    /// Price of one million prompt tokens read from the provider's cache (`None`: the input rate).
    pub cached_input_per_mtok: Option<MicroUsd>,
    /// Price of one million prompt tokens written to the provider's cache (`None`: the input rate).
    pub cache_write_per_mtok: Option<MicroUsd>,
}

impl ModelPrice {
    /// A price from dollars per million tokens written as decimals, e.g. `("2.50", "10.00")`.
    ///
    /// # Errors
    ///
    /// [`InvalidPrice`] when either price is not a non-negative decimal with at most 6 decimals.
    pub fn per_million(input: &str, output: &str) -> Result<Self, InvalidPrice> {
        Ok(Self {
            input_per_mtok: input.parse()?,
            output_per_mtok: output.parse()?,
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
        })
    }

    /// With `price` per million prompt tokens read from the provider's cache.
    #[must_use]
    pub const fn with_cached_input(mut self, price: MicroUsd) -> Self {
        self.cached_input_per_mtok = Some(price);
        self
    }

    /// With `price` per million prompt tokens written to the provider's cache.
    #[must_use]
    pub const fn with_cache_write(mut self, price: MicroUsd) -> Self {
        self.cache_write_per_mtok = Some(price);
        self
    }

    /// The higher of each rate: a price no lower than either, for a call either may charge.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        let input = self.input_per_mtok.max(other.input_per_mtok);
        let rate = |own: Option<MicroUsd>, theirs: Option<MicroUsd>, input_rate: MicroUsd| {
            let own = own.unwrap_or(self.input_per_mtok);
            let theirs = theirs.unwrap_or(other.input_per_mtok);
            let rate = own.max(theirs);
            (rate != input_rate).then_some(rate)
        };
        Self {
            input_per_mtok: input,
            output_per_mtok: self.output_per_mtok.max(other.output_per_mtok),
            cached_input_per_mtok: rate(
                self.cached_input_per_mtok,
                other.cached_input_per_mtok,
                input,
            ),
            cache_write_per_mtok: rate(
                self.cache_write_per_mtok,
                other.cache_write_per_mtok,
                input,
            ),
        }
    }

    /// The cost of `usage`, rounded up to a whole micro-dollar.
    ///
    /// Uncached prompt tokens cost the input rate, cached and cache-written ones their own rates
    /// (the input rate where none is set), answer tokens the output rate. The exact products are
    /// summed first and rounded once, so rounding never adds more than one micro-dollar per call;
    /// rounding up keeps budgets on the safe side.
    pub fn cost(&self, usage: Usage) -> MicroUsd {
        let input = self.input_per_mtok.0;
        let times = |tokens: u64, rate: u64| u128::from(tokens) * u128::from(rate);
        let nano_micros = times(usage.uncached_input_tokens(), input)
            + times(
                usage.cached_input_tokens,
                self.cached_input_per_mtok.map_or(input, |p| p.0),
            )
            + times(
                usage.cache_write_tokens,
                self.cache_write_per_mtok.map_or(input, |p| p.0),
            )
            + times(usage.output_tokens, self.output_per_mtok.0);
        let micros = nano_micros.div_ceil(1_000_000);
        MicroUsd(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

/// A request extension: the most any model that may answer the call charges, when that need not
/// be the request's own model (a role whose calls may move to other models). A rate limiter
/// reserves the call's cost at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceCeiling(pub ModelPrice);

/// A response extension: the price of the model that answered. A rate limiter settles the call's
/// cost at it, whatever model the request named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnsweredPrice(pub ModelPrice);

/// Per-model prices, looked up by exact model name, then by the longest configured prefix
/// (so `gpt-4o` prices `gpt-4o-2024-08-06`).
///
/// tollgate ships no prices of its own: they change too often to be trusted from a library. Load
/// them from configuration. `cached_input` and `cache_write` price prompt tokens read from and
/// written to the provider's prompt cache; absent, those cost the input rate.
///
/// ```
/// use tollgate_core::{MicroUsd, PricingTable, Usage};
///
/// let table: PricingTable = serde_json::from_str(r#"{
///     "gpt-4o": { "input": "2.50", "output": "10.00", "cached_input": "1.25" },
///     "gpt-4o-mini": { "input": "0.15", "output": "0.60" },
///     "claude-sonnet-4": { "input": "3.00", "output": "15.00", "cached_input": "0.30", "cache_write": "3.75" }
/// }"#).unwrap();
///
/// let cost = table.cost("gpt-4o-2024-08-06", Usage::new(1_234, 567)).unwrap();
/// assert_eq!(cost, MicroUsd(8_755));
/// assert_eq!(cost.to_string(), "$0.008755");
/// // 1,000 of 1,200 prompt tokens from OpenAI's cache: 1,000 × $1.25/M + 200 × $2.50/M + 50 × $10/M.
/// let cached = Usage::new(1_200, 50).with_cached_input(1_000);
/// assert_eq!(table.cost("gpt-4o", cached), Some(MicroUsd(2_250)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PricingTable {
    prices: BTreeMap<String, ModelPrice>,
}

impl PricingTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the price of a model (or model prefix).
    #[must_use]
    pub fn with(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.insert(model, price);
        self
    }

    /// Adds or replaces the price of a model (or model prefix).
    pub fn insert(&mut self, model: impl Into<String>, price: ModelPrice) {
        self.prices.insert(model.into(), price);
    }

    /// The price for `model`: an exact entry, else the entry with the longest name that `model`
    /// starts with.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.prices.get(model).or_else(|| {
            self.prices
                .iter()
                .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, price)| price)
        })
    }

    /// The cost of `usage` on `model`, or `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: Usage) -> Option<MicroUsd> {
        self.get(model).map(|price| price.cost(usage))
    }

    /// The models (or model-name prefixes) with a price, in order.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.prices.keys().map(String::as_str)
    }

    /// How many models have a price.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    input: Dollars,
    output: Dollars,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cached_input: Option<Dollars>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_write: Option<Dollars>,
}

/// Dollars per million tokens on the wire: a decimal string (`"2.50"`) or a plain number (`2.5`).
struct Dollars(MicroUsd);

impl Serialize for Dollars {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = format!("{}", self.0);
        serializer.serialize_str(&text[1..]) // without the `$`
    }
}

impl<'de> Deserialize<'de> for Dollars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Dollars;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("US dollars per million tokens, e.g. \"2.50\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dollars, E> {
                v.parse().map(Dollars).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dollars, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dollars, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dollars, E> {
                // The shortest decimal that round-trips the float, which is what the user wrote.
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for PricingTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.prices.iter().map(|(model, price)| {
            (
                model,
                PriceEntry {
                    input: Dollars(price.input_per_mtok),
                    output: Dollars(price.output_per_mtok),
                    cached_input: price.cached_input_per_mtok.map(Dollars),
                    cache_write: price.cache_write_per_mtok.map(Dollars),
                },
            )
        }))
    }
}

impl<'de> Deserialize<'de> for PricingTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<String, PriceEntry>::deserialize(deserializer)?;
        Ok(Self {
            prices: entries
                .into_iter()
                .map(|(model, entry)| {
                    (
                        model,
                        ModelPrice {
                            input_per_mtok: entry.input.0,
                            output_per_mtok: entry.output.0,
                            cached_input_per_mtok: entry.cached_input.map(|d| d.0),
                            cache_write_per_mtok: entry.cache_write.map(|d| d.0),
                        },
                    )
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_model_costs_the_exact_micro_dollars() {
        let table =
            PricingTable::new().with("gpt-4o", ModelPrice::per_million("2.50", "10.00").unwrap());
        // 1,234 × $2.50/M + 567 × $10.00/M = $0.003085 + $0.005670 = $0.008755
        assert_eq!(
            table.cost("gpt-4o", Usage::new(1_234, 567)),
            Some(MicroUsd(8_755))
        );
    }

    #[test]
    fn fractions_of_a_micro_dollar_round_up_once() {
        let price = ModelPrice::per_million("0.15", "0.60").unwrap();
        // 1,234 × 0.15 = 185.1 µ$, 567 × 0.60 = 340.2 µ$ → 525.3 µ$ → 526 µ$
        assert_eq!(price.cost(Usage::new(1_234, 567)), MicroUsd(526));
        assert_eq!(price.cost(Usage::default()), MicroUsd::ZERO);
    }

    #[test]
    fn the_higher_of_two_prices_is_the_higher_rate_of_each_kind() {
        let cheap = ModelPrice::per_million("1", "2")
            .unwrap()
            .with_cached_input(MicroUsd(100_000));
        let dear = ModelPrice::per_million("3", "1").unwrap();
        let both = cheap.max(dear);
        assert_eq!(both.input_per_mtok, MicroUsd(3_000_000));
        assert_eq!(both.output_per_mtok, MicroUsd(2_000_000));
        // `dear` reads its cache at its input rate, the higher: no rate of its own is needed.
        assert_eq!(both.cached_input_per_mtok, None);
        for usage in [
            Usage::new(1_000, 10),
            Usage::new(1_000, 10).with_cached_input(900),
        ] {
            let most = both.cost(usage);
            assert!(
                most >= cheap.cost(usage) && most >= dear.cost(usage),
                "{usage:?}"
            );
        }
    }

    #[test]
    fn lookup_prefers_exact_then_longest_prefix() {
        let table = PricingTable::new()
            .with("gpt-4", ModelPrice::per_million("30", "60").unwrap())
            .with("gpt-4o", ModelPrice::per_million("2.5", "10").unwrap())
            .with(
                "gpt-4o-mini",
                ModelPrice::per_million("0.15", "0.6").unwrap(),
            );
        let input = |m: &str| table.get(m).map(|p| p.input_per_mtok.0);
        assert_eq!(input("gpt-4o-mini-2024-07-18"), Some(150_000));
        assert_eq!(input("gpt-4o-2024-08-06"), Some(2_500_000));
        assert_eq!(input("gpt-4-turbo"), Some(30_000_000));
        assert_eq!(input("claude-3"), None);
    }

    #[test]
    fn prices_parse_without_floats_and_reject_nonsense() {
        assert_eq!("2.50".parse::<MicroUsd>(), Ok(MicroUsd(2_500_000)));
        assert_eq!("0.000001".parse::<MicroUsd>(), Ok(MicroUsd(1)));
        assert_eq!("15".parse::<MicroUsd>(), Ok(MicroUsd(15_000_000)));
        for bad in ["", "-1", "1.2345678", "abc", "1.2.3", ".5", "1e3"] {
            assert!(
                bad.parse::<MicroUsd>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn table_round_trips_through_serde_and_rejects_unknown_fields() {
        let json = r#"{"a":{"input":"1.25","output":3},"b":{"input":0.075,"output":"0.3"}}"#;
        let table: PricingTable = serde_json::from_str(json).unwrap();
        assert_eq!(table.get("b").unwrap().input_per_mtok, MicroUsd(75_000));
        let again: PricingTable =
            serde_json::from_str(&serde_json::to_string(&table).unwrap()).unwrap();
        assert_eq!(table, again);

        let err = serde_json::from_str::<PricingTable>(r#"{"a":{"input":"1","ouput":"2"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `ouput`"), "{err}");
        let err = serde_json::from_str::<PricingTable>(r#"{"a":{"input":"-1","output":"2"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid price"), "{err}");
    }
}

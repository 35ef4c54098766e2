//! Model prices and the cost of a call, in integer micro-dollars (never floats for money).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::Usage;

mod catalog;
mod media;
mod table;

pub use catalog::PriceCatalog;
pub use media::MediaPrice;
pub use table::{FoundPrice, PriceListing, PricingTable};

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
/// their own when the provider prices them apart; absent, they cost the input rate. A model
/// that charges more for a long prompt (Anthropic's and Google's over 200,000 tokens) has a
/// [`LongContext`] tier, whose rates price the whole call once its prompt is past the tier's
/// threshold.
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
    /// The rates of a call whose prompt is longer than the tier's threshold, when the model has
    /// such a tier.
    pub long_context: Option<LongContext>,
}

/// A model's rates for a long prompt: a call whose prompt (cached and cache-written tokens
/// included) is over `above_input_tokens` pays these for all its tokens.
///
/// ```
/// use tollgate_core::{LongContext, MicroUsd, ModelPrice, Usage};
///
/// let price = ModelPrice::per_million("1.25", "10.00").unwrap().with_long_context(
///     LongContext::per_million(200_000, "2.50", "15.00").unwrap(),
/// );
/// assert_eq!(price.cost(Usage::new(200_000, 0)), MicroUsd(250_000));
/// // One token more and the whole prompt, and the answer, cost the tier's rates.
/// assert_eq!(price.cost(Usage::new(200_001, 1_000)), MicroUsd(515_003));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LongContext {
    /// The prompt length past which the tier applies.
    pub above_input_tokens: u64,
    /// Price of one million prompt tokens.
    pub input_per_mtok: MicroUsd,
    /// Price of one million generated tokens.
    pub output_per_mtok: MicroUsd,
    /// Price of one million cached prompt tokens (`None`: the tier's input rate).
    pub cached_input_per_mtok: Option<MicroUsd>,
    /// Price of one million cache-written prompt tokens (`None`: the tier's input rate).
    pub cache_write_per_mtok: Option<MicroUsd>,
}

impl LongContext {
    /// A tier past `above_input_tokens` with rates in dollars per million tokens.
    ///
    /// # Errors
    ///
    /// [`InvalidPrice`] when either price is not a non-negative decimal with at most 6 decimals.
    pub fn per_million(
        above_input_tokens: u64,
        input: &str,
        output: &str,
    ) -> Result<Self, InvalidPrice> {
        Ok(Self {
            above_input_tokens,
            input_per_mtok: input.parse()?,
            output_per_mtok: output.parse()?,
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
        })
    }

    /// With `price` per million cached prompt tokens.
    #[must_use]
    pub const fn with_cached_input(mut self, price: MicroUsd) -> Self {
        self.cached_input_per_mtok = Some(price);
        self
    }

    /// With `price` per million cache-written prompt tokens.
    #[must_use]
    pub const fn with_cache_write(mut self, price: MicroUsd) -> Self {
        self.cache_write_per_mtok = Some(price);
        self
    }

    fn rates(&self) -> Rates {
        Rates {
            input: self.input_per_mtok,
            output: self.output_per_mtok,
            cached: self.cached_input_per_mtok,
            write: self.cache_write_per_mtok,
        }
    }
}

/// One set of rates, a tier's or the base's.
#[derive(Clone, Copy)]
struct Rates {
    input: MicroUsd,
    output: MicroUsd,
    cached: Option<MicroUsd>,
    write: Option<MicroUsd>,
}

impl Rates {
    fn cost(self, usage: Usage) -> MicroUsd {
        let input = self.input.0;
        let times = |tokens: u64, rate: u64| u128::from(tokens) * u128::from(rate);
        let nano_micros = times(usage.uncached_input_tokens(), input)
            + times(
                usage.cached_input_tokens,
                self.cached.map_or(input, |p| p.0),
            )
            + times(usage.cache_write_tokens, self.write.map_or(input, |p| p.0))
            + times(usage.output_tokens, self.output.0);
        let micros = nano_micros.div_ceil(1_000_000);
        MicroUsd(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The higher of each rate; a cache rate of its own only where it differs from the input's.
    fn max(self, other: Self) -> Self {
        let input = self.input.max(other.input);
        let rate = |own: Option<MicroUsd>, theirs: Option<MicroUsd>| {
            let rate = own.unwrap_or(self.input).max(theirs.unwrap_or(other.input));
            (rate != input).then_some(rate)
        };
        Self {
            input,
            output: self.output.max(other.output),
            cached: rate(self.cached, other.cached),
            write: rate(self.write, other.write),
        }
    }
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
            long_context: None,
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

    /// With rates of its own for a long prompt.
    #[must_use]
    pub const fn with_long_context(mut self, tier: LongContext) -> Self {
        self.long_context = Some(tier);
        self
    }

    fn rates(&self) -> Rates {
        Rates {
            input: self.input_per_mtok,
            output: self.output_per_mtok,
            cached: self.cached_input_per_mtok,
            write: self.cache_write_per_mtok,
        }
    }

    /// The most this model charges a token of each kind, past any threshold.
    fn highest_rates(&self) -> Rates {
        match self.long_context {
            // A tier never charges less than the base (the catalog's do not); the higher of
            // each keeps a ceiling safe either way.
            Some(tier) => tier.rates().max(self.rates()),
            None => self.rates(),
        }
    }

    /// A price no lower than either for any call: the higher of each rate, and a long-context
    /// tier from the earlier threshold at the higher of each rate either charges past it.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        let base = self.rates().max(other.rates());
        let threshold = match (self.long_context, other.long_context) {
            (Some(a), Some(b)) => Some(a.above_input_tokens.min(b.above_input_tokens)),
            (Some(tier), None) | (None, Some(tier)) => Some(tier.above_input_tokens),
            (None, None) => None,
        };
        let long_context = threshold.map(|above| {
            let rates = self.highest_rates().max(other.highest_rates());
            LongContext {
                above_input_tokens: above,
                input_per_mtok: rates.input,
                output_per_mtok: rates.output,
                cached_input_per_mtok: rates.cached,
                cache_write_per_mtok: rates.write,
            }
        });
        Self {
            input_per_mtok: base.input,
            output_per_mtok: base.output,
            cached_input_per_mtok: base.cached,
            cache_write_per_mtok: base.write,
            long_context,
        }
    }

    /// The cost of `usage`, rounded up to a whole micro-dollar.
    ///
    /// Uncached prompt tokens cost the input rate, cached and cache-written ones their own rates
    /// (the input rate where none is set), answer tokens the output rate; a prompt past the
    /// long-context tier's threshold pays the tier's rates for every token. The exact products
    /// are summed first and rounded once, so rounding never adds more than one micro-dollar per
    /// call; rounding up keeps budgets on the safe side.
    pub fn cost(&self, usage: Usage) -> MicroUsd {
        match self.long_context {
            Some(tier) if usage.input_tokens > tier.above_input_tokens => tier.rates().cost(usage),
            _ => self.rates().cost(usage),
        }
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
    fn lookup_is_by_name_and_version_suffix_never_by_prefix() {
        let table = PricingTable::new()
            .with("gpt-4", ModelPrice::per_million("30", "60").unwrap())
            .with("gpt-4o", ModelPrice::per_million("2.5", "10").unwrap())
            .with(
                "claude-3-5-sonnet",
                ModelPrice::per_million("3", "15").unwrap(),
            )
            .with(
                "anthropic.claude-3-5-sonnet",
                ModelPrice::per_million("3", "15").unwrap(),
            )
            .with(
                "gemini-1.5-pro",
                ModelPrice::per_million("1.25", "5").unwrap(),
            )
            .with("mock-model", ModelPrice::per_million("1", "1").unwrap());
        let input = |m: &str| table.get(m).map(|p| p.input_per_mtok.0);
        assert_eq!(input("gpt-4o-2024-08-06"), Some(2_500_000));
        assert_eq!(input("gpt-4o-latest"), Some(2_500_000));
        assert_eq!(input("claude-3-5-sonnet-20241022"), Some(3_000_000));
        assert_eq!(input("claude-3-5-sonnet@20241022"), Some(3_000_000));
        assert_eq!(
            input("anthropic.claude-3-5-sonnet-20241022-v2:0"),
            Some(3_000_000)
        );
        assert_eq!(
            input("global.anthropic.claude-3-5-sonnet-20241022-v2:0"),
            Some(3_000_000)
        );
        assert_eq!(input("gemini-1.5-pro-002"), Some(1_250_000));
        for unpriced in [
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            "gpt-4-turbo",
            "gpt-4o2024-08-06",
            "mock-model?x=1",
            "mock-model x",
            "-latest",
            "us.gpt-4o",
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "global.gpt-4o",
            "claude-3",
            "gpt-4o-v3",
        ] {
            assert_eq!(input(unpriced), None, "{unpriced}");
        }
    }

    #[test]
    fn a_provider_s_own_price_wins_for_its_calls_only() {
        let mut table =
            PricingTable::new().with("gpt-4o", ModelPrice::per_million("2.5", "10").unwrap());
        table.insert_for(
            "azure-eu",
            "gpt-4o",
            ModelPrice::per_million("2.75", "11").unwrap(),
        );
        let input = |p: Option<&str>, m: &str| table.get_for(p, m).map(|p| p.input_per_mtok.0);
        assert_eq!(
            input(Some("azure-eu"), "gpt-4o-2024-08-06"),
            Some(2_750_000)
        );
        assert_eq!(input(Some("openai"), "gpt-4o"), Some(2_500_000));
        assert_eq!(input(None, "gpt-4o"), Some(2_500_000));
        assert_eq!(input(Some("azure-eu"), "gpt-4o-mini"), None);
        // A model's exact price wins over a provider's price for its base name.
        table.insert(
            "gpt-4o-2024-05-13",
            ModelPrice::per_million("5", "15").unwrap(),
        );
        let input = |p: Option<&str>, m: &str| table.get_for(p, m).map(|p| p.input_per_mtok.0);
        assert_eq!(
            input(Some("azure-eu"), "gpt-4o-2024-05-13"),
            Some(5_000_000)
        );
        assert_eq!(
            input(Some("azure-eu"), "gpt-4o-2024-08-06"),
            Some(2_750_000)
        );
    }

    #[test]
    fn a_long_prompt_pays_the_tier_for_every_token_and_the_ceiling_covers_both() {
        let tiered = ModelPrice::per_million("3", "15")
            .unwrap()
            .with_cached_input(MicroUsd(300_000))
            .with_long_context(
                LongContext::per_million(200_000, "6", "22.5")
                    .unwrap()
                    .with_cached_input(MicroUsd(600_000)),
            );
        // At the threshold: base rates. 200,000 × $3/M + 1,000 × $15/M.
        assert_eq!(tiered.cost(Usage::new(200_000, 1_000)), MicroUsd(615_000));
        // Past it: every token at the tier's. 100,001 × $6/M + 100,000 cached × $0.60/M + 1,000 × $22.50/M.
        let long = Usage::new(200_001, 1_000).with_cached_input(100_000);
        assert_eq!(tiered.cost(long), MicroUsd(600_006 + 60_000 + 22_500));
        let flat = ModelPrice::per_million("5", "10").unwrap();
        let ceiling = tiered.max(flat);
        for usage in [
            Usage::new(1_000, 10),
            Usage::new(300_000, 10),
            Usage::new(300_000, 10).with_cached_input(250_000),
        ] {
            let most = ceiling.cost(usage);
            assert!(
                most >= tiered.cost(usage) && most >= flat.cost(usage),
                "{usage:?}"
            );
        }
        assert_eq!(ceiling.long_context.unwrap().above_input_tokens, 200_000);
    }

    proptest::proptest! {
        #[test]
        fn any_versioned_form_of_a_listed_name_takes_its_price(
            base in "[a-z][a-z0-9.]{0,12}[a-z0-9](-[a-z0-9]{1,8}){0,3}",
            forms in proptest::collection::vec(0..6_usize, 0..3),
            other in "[a-z0-9?= ._-]{1,8}",
        ) {
            let price = ModelPrice::per_million("1", "2").unwrap();
            let table = PricingTable::new().with(base.clone(), price);
            let mut name = base.clone();
            for form in forms {
                name.push_str(["-2024-07-18", "-20241022", "@20241022", "-v2:0", "-latest", "-001"][form]);
            }
            proptest::prop_assert_eq!(table.get(&name), Some(&price));
            // Anything else after the name is another model, unless it is a version form:
            // whatever is priced reaches the listed name by removing version forms alone.
            let longer = format!("{base}{other}");
            if table.get(&longer).is_some() {
                let mut name = longer.as_str();
                while name != base {
                    let shorter = table::unversioned(name);
                    proptest::prop_assert!(shorter.is_some(), "{} priced as {}", longer, base);
                    name = shorter.unwrap_or(&base);
                }
            }
        }

        #[test]
        fn unversioned_never_panics_and_always_shortens(name in "\\PC{0,24}") {
            if let Some(shorter) = table::unversioned(&name) {
                proptest::prop_assert!(shorter.len() < name.len());
            }
        }
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

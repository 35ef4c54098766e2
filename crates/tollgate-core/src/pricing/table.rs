//! [`PricingTable`]: prices by model, and by provider where a cloud charges its own; looked up by
//! exact name, then by the name without its provider's version suffix, never by a prefix.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::{LongContext, MediaPrice, MicroUsd, ModelPrice};
use crate::Usage;

/// Per-model prices, and per-provider prices where a provider charges its own.
///
/// A model's price is found by its exact name, then by the name without a version suffix its
/// provider adds (`-2024-07-18`, `-20241022`, `@20241022`, `-v1:0`, `-latest`, `-001`, removed
/// one at a time, and Bedrock's `global.` inference profile), so `gpt-4o-2024-08-06` takes
/// `gpt-4o`'s price. Never by an arbitrary prefix: `gpt-4o` does not price `gpt-4o-mini`, and
/// `mock-model?x=1` is not `mock-model`.
///
/// Prices come from configuration, on top of the catalog tollgate ships
/// ([`PriceCatalog`](super::PriceCatalog)). `cached_input` and `cache_write` price prompt tokens
/// read from and written to the provider's prompt cache; absent, those cost the input rate.
///
/// ```
/// use tollgate_core::{MicroUsd, PricingTable, Usage};
///
/// let table: PricingTable = serde_json::from_str(r#"{
///     "gpt-4o": { "input": "2.50", "output": "10.00", "cached_input": "1.25" },
///     "claude-sonnet-4-5": { "input": "3.00", "output": "15.00", "cached_input": "0.30", "cache_write": "3.75" }
/// }"#).unwrap();
///
/// let cost = table.cost("gpt-4o-2024-08-06", Usage::new(1_234, 567)).unwrap();
/// assert_eq!(cost, MicroUsd(8_755));
/// assert_eq!(cost.to_string(), "$0.008755");
/// // 1,000 of 1,200 prompt tokens from OpenAI's cache: 1,000 × $1.25/M + 200 × $2.50/M + 50 × $10/M.
/// let cached = Usage::new(1_200, 50).with_cached_input(1_000);
/// assert_eq!(table.cost("gpt-4o", cached), Some(MicroUsd(2_250)));
/// // Another model is not priced as one whose name it starts with.
/// assert_eq!(table.cost("gpt-4o-mini", cached), None);
/// assert!(table.get("claude-sonnet-4-5-20250929").is_some());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PricingTable {
    prices: BTreeMap<String, ModelPrice>,
    /// Prices a provider charges instead, by the provider's name.
    providers: BTreeMap<String, BTreeMap<String, ModelPrice>>,
    /// Prices per image and per second of audio, by model.
    media: BTreeMap<String, MediaPrice>,
}

impl PricingTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the price of a model.
    #[must_use]
    pub fn with(mut self, model: impl Into<String>, price: ModelPrice) -> Self {
        self.insert(model, price);
        self
    }

    /// Adds or replaces the price of a model.
    pub fn insert(&mut self, model: impl Into<String>, price: ModelPrice) {
        self.prices.insert(model.into(), price);
    }

    /// Adds or replaces the price `provider` charges for a model, which wins over the model's
    /// own price for calls to that provider.
    pub fn insert_for(
        &mut self,
        provider: impl Into<String>,
        model: impl Into<String>,
        price: ModelPrice,
    ) {
        self.providers
            .entry(provider.into())
            .or_default()
            .insert(model.into(), price);
    }

    /// Adds or replaces a model's prices per image and per second of audio
    /// ([`MediaPrice`]), which are by model only, whatever provider serves it.
    pub fn insert_media(&mut self, model: impl Into<String>, price: MediaPrice) {
        self.media.insert(model.into(), price);
    }

    /// Adds or replaces what one line of a price list sets: a model's token price, its media
    /// price, or both.
    pub fn insert_listing(&mut self, model: impl Into<String>, listing: PriceListing) {
        let model = model.into();
        if let Some(media) = listing.media {
            self.media.insert(model.clone(), media);
        }
        if let Some(tokens) = listing.tokens {
            self.prices.insert(model, tokens);
        }
    }

    /// `model`'s prices per image and per second of audio: its own entry, else the entry of the
    /// name it is a versioned form of.
    pub fn media(&self, model: &str) -> Option<&MediaPrice> {
        find(&self.media, model).map(|(_, price)| price)
    }

    /// Every price of `other` added over this table's: a model's own price replaces this
    /// table's for that model, every provider's included; a provider's own replaces that
    /// provider's.
    pub fn override_with(&mut self, other: Self) {
        for model in other.prices.keys() {
            for prices in self.providers.values_mut() {
                prices.remove(model);
            }
        }
        self.prices.extend(other.prices);
        self.media.extend(other.media);
        for (provider, prices) in other.providers {
            self.providers.entry(provider).or_default().extend(prices);
        }
    }

    /// The price for `model`: its own entry, else the entry of the name it is a versioned form
    /// of (see the type's documentation).
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        find(&self.prices, model).map(|(_, price)| price)
    }

    /// The price for `model` when `provider` serves it: the provider's own price where it has
    /// one, else the model's.
    pub fn get_for(&self, provider: Option<&str>, model: &str) -> Option<&ModelPrice> {
        self.lookup(provider, model).map(|found| found.price)
    }

    /// As [`get_for`](Self::get_for), with the name the price is listed under and whether it
    /// is the provider's own.
    ///
    /// The most specific name wins: each form of the name, from the name itself down, is looked
    /// up in the provider's prices and then the models', so an exact price for a dated snapshot
    /// is never lost to a provider's price for its base.
    pub fn lookup(&self, provider: Option<&str>, model: &str) -> Option<FoundPrice<'_>> {
        let own = provider.and_then(|provider| self.providers.get(provider));
        let mut name = model;
        loop {
            if let Some((listed, price)) = own.and_then(|own| own.get_key_value(name)) {
                return Some(FoundPrice {
                    name: listed,
                    price,
                    providers_own: true,
                });
            }
            if let Some((listed, price)) = self.prices.get_key_value(name) {
                return Some(FoundPrice {
                    name: listed,
                    price,
                    providers_own: false,
                });
            }
            name = unversioned(name)?;
        }
    }

    /// The most any provider charges for `model`: the higher of each rate among its own price
    /// and every provider's, for a call whose provider is not known yet.
    pub fn dearest(&self, model: &str) -> Option<ModelPrice> {
        self.providers
            .values()
            .filter_map(|prices| find(prices, model).map(|(_, price)| price))
            .chain(self.get(model))
            .copied()
            .reduce(ModelPrice::max)
    }

    /// The cost of `usage` on `model`, or `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: Usage) -> Option<MicroUsd> {
        self.get(model).map(|price| price.cost(usage))
    }

    /// The models with a price of their own, in order (providers' own prices not included).
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.prices.keys().map(String::as_str)
    }

    /// Each provider's own prices, by provider and model, in order.
    pub fn provider_prices(&self) -> impl Iterator<Item = (&str, &str, &ModelPrice)> {
        self.providers.iter().flat_map(|(provider, prices)| {
            prices
                .iter()
                .map(move |(model, price)| (provider.as_str(), model.as_str(), price))
        })
    }

    /// How many models have a price (providers' own prices not included).
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether no model has a price.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty() && self.providers.is_empty() && self.media.is_empty()
    }
}

/// A price found for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoundPrice<'a> {
    /// The name it is listed under: the model's, or the one it is a versioned form of.
    pub name: &'a str,
    /// The price.
    pub price: &'a ModelPrice,
    /// Whether it is the provider's own price rather than the model's.
    pub providers_own: bool,
}

/// `model`'s price in `prices`, with the name it is listed under: by its name, then by each
/// shorter versioned form of it.
fn find<'a, P>(prices: &'a BTreeMap<String, P>, model: &str) -> Option<(&'a str, &'a P)> {
    let mut name = model;
    loop {
        if let Some((listed, price)) = prices.get_key_value(name) {
            return Some((listed.as_str(), price));
        }
        name = unversioned(name)?;
    }
}

/// `model` without one version suffix or inference-profile region its provider adds, when it
/// has one: `-latest`, `@20241022` (Vertex), `-v2:0` (Bedrock), `-2024-07-18` (OpenAI),
/// `-20241022` (Anthropic), `-001` (Google), or a leading `global.` (Bedrock's global inference
/// profile, which charges the model's own price; a regional one, `us.` or `eu.`, charges more).
pub(crate) fn unversioned(model: &str) -> Option<&str> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(base) = model.strip_suffix("-latest") {
        return non_empty(base);
    }
    if let Some((base, version)) = model.rsplit_once('@')
        && (version == "latest" || digits(version, 8) || digits(version, 3))
    {
        return non_empty(base);
    }
    // -2024-07-18
    if let Some((base, date)) = model
        .len()
        .checked_sub(11)
        .filter(|&at| at > 0 && model.is_char_boundary(at))
        .map(|at| model.split_at(at))
    {
        let b = date.as_bytes();
        if b[0] == b'-'
            && b[5] == b'-'
            && b[8] == b'-'
            && [&date[1..5], &date[6..8], &date[9..11]]
                .iter()
                .all(|part| part.bytes().all(|c| c.is_ascii_digit()))
        {
            return non_empty(base);
        }
    }
    if let Some((base, tail)) = model.rsplit_once('-') {
        // Bedrock's `-v2:0`; not a bare `-v3`, which is a model of its own (`deepseek-v3`).
        let bedrock = tail.strip_prefix('v').is_some_and(|version| {
            let Some((major, minor)) = version.split_once(':') else {
                return false;
            };
            !major.is_empty()
                && !minor.is_empty()
                && major
                    .bytes()
                    .chain(minor.bytes())
                    .all(|b| b.is_ascii_digit())
        });
        if bedrock || digits(tail, 8) || digits(tail, 3) {
            return non_empty(base);
        }
    }
    // A regional profile (`us.`, `eu.`) charges more than the global one: priced only where
    // it is listed, never as the model.
    model
        .strip_prefix("global.")
        .filter(|rest| rest.contains('.'))
}

fn non_empty(name: &str) -> Option<&str> {
    (!name.is_empty() && !name.ends_with(['-', '@', '.'])).then_some(name)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PriceEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<Dollars>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<Dollars>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cached_input: Option<Dollars>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_write: Option<Dollars>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    long_context: Option<TierEntry>,
    /// Dollars per image, by `"{quality}/{size}"`, `"{size}"`, `"{quality}"` or `"*"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    per_image: BTreeMap<String, Dollars>,
    /// Dollars per second of audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    per_audio_second: Option<Dollars>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierEntry {
    above_input_tokens: u64,
    input: Dollars,
    output: Dollars,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cached_input: Option<Dollars>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_write: Option<Dollars>,
}

/// What one line of a price list sets: a model's price per token, its price per image or per
/// second of audio ([`MediaPrice`]), or both. Configuration writes it as
/// `{input, output, cached_input, cache_write, long_context, per_image, per_audio_second}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PriceListing {
    /// The token price, when `input` and `output` are given.
    pub tokens: Option<ModelPrice>,
    /// The media price, when `per_image` or `per_audio_second` is given.
    pub media: Option<MediaPrice>,
}

impl<'de> Deserialize<'de> for PriceListing {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        PriceEntry::deserialize(deserializer)?
            .split()
            .map_err(de::Error::custom)
    }
}

impl PriceEntry {
    /// The token price and the media price the entry gives; an entry that gives neither, or
    /// half a token price, is a mistake.
    pub(super) fn split(self) -> Result<PriceListing, String> {
        let media = MediaPrice {
            per_image: self.per_image.into_iter().map(|(k, v)| (k, v.0)).collect(),
            per_audio_second: self.per_audio_second.map(|d| d.0),
        };
        let media = (!media.is_empty()).then_some(media);
        let tokens = match (self.input, self.output) {
            (Some(input), Some(output)) => Some(ModelPrice {
                input_per_mtok: input.0,
                output_per_mtok: output.0,
                cached_input_per_mtok: self.cached_input.map(|d| d.0),
                cache_write_per_mtok: self.cache_write.map(|d| d.0),
                long_context: self.long_context.map(|tier| LongContext {
                    above_input_tokens: tier.above_input_tokens,
                    input_per_mtok: tier.input.0,
                    output_per_mtok: tier.output.0,
                    cached_input_per_mtok: tier.cached_input.map(|d| d.0),
                    cache_write_per_mtok: tier.cache_write.map(|d| d.0),
                }),
            }),
            (None, None)
                if self.cached_input.is_none()
                    && self.cache_write.is_none()
                    && self.long_context.is_none()
                    && media.is_some() =>
            {
                None
            }
            (None, None) if media.is_none() => {
                return Err("a price needs `input` and `output` (dollars per million tokens), or `per_image` / `per_audio_second`".into());
            }
            (Some(_), None) => return Err("missing field `output`".into()),
            _ => return Err("missing field `input`".into()),
        };
        Ok(PriceListing { tokens, media })
    }

    /// The token price alone: where prices are per provider, which has none per image.
    pub(super) fn tokens(self) -> Result<ModelPrice, String> {
        let listing = self.split()?;
        match (listing.tokens, listing.media) {
            (Some(tokens), None) => Ok(tokens),
            (_, Some(_)) => Err(
                "`per_image` and `per_audio_second` are priced by model, not per provider".into(),
            ),
            (None, None) => Err("missing field `input`".into()),
        }
    }

    fn of(tokens: Option<&ModelPrice>, media: Option<&MediaPrice>) -> Self {
        let mut entry = tokens.map_or_else(Self::empty, Self::from);
        if let Some(media) = media {
            entry.per_image = media
                .per_image
                .iter()
                .map(|(k, v)| (k.clone(), Dollars(*v)))
                .collect();
            entry.per_audio_second = media.per_audio_second.map(Dollars);
        }
        entry
    }

    fn empty() -> Self {
        Self {
            input: None,
            output: None,
            cached_input: None,
            cache_write: None,
            long_context: None,
            per_image: BTreeMap::new(),
            per_audio_second: None,
        }
    }
}

impl From<&ModelPrice> for PriceEntry {
    fn from(price: &ModelPrice) -> Self {
        Self {
            input: Some(Dollars(price.input_per_mtok)),
            output: Some(Dollars(price.output_per_mtok)),
            cached_input: price.cached_input_per_mtok.map(Dollars),
            cache_write: price.cache_write_per_mtok.map(Dollars),
            long_context: price.long_context.map(|tier| TierEntry {
                above_input_tokens: tier.above_input_tokens,
                input: Dollars(tier.input_per_mtok),
                output: Dollars(tier.output_per_mtok),
                cached_input: tier.cached_input_per_mtok.map(Dollars),
                cache_write: tier.cache_write_per_mtok.map(Dollars),
            }),
            per_image: BTreeMap::new(),
            per_audio_second: None,
        }
    }
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

/// A price as configuration writes it: `{input, output, cached_input, cache_write, long_context}`
/// in dollars per million tokens.
impl Serialize for ModelPrice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PriceEntry::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ModelPrice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        PriceEntry::deserialize(deserializer)?
            .tokens()
            .map_err(de::Error::custom)
    }
}

/// The models' own prices as a map of model name to price (providers' own are not written).
impl Serialize for PricingTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let models: std::collections::BTreeSet<&String> =
            self.prices.keys().chain(self.media.keys()).collect();
        serializer.collect_map(models.into_iter().map(|model| {
            let entry = PriceEntry::of(self.prices.get(model), self.media.get(model));
            (model, entry)
        }))
    }
}

/// A map of model name to price.
impl<'de> Deserialize<'de> for PricingTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<String, PriceListing>::deserialize(deserializer)?;
        let mut table = Self::new();
        for (model, listing) in entries {
            table.insert_listing(model, listing);
        }
        Ok(table)
    }
}

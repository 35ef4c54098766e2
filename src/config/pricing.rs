//! The `pricing` section: the configuration's own prices, over the catalog tollgate ships.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess},
};
use tollgate_core::{ModelPrice, PriceCatalog, PriceListing, PricingTable};

use super::sections::Config;

/// What each call costs: the [shipped catalog](PriceCatalog::shipped) (dated, its sources named),
/// with the configuration's own prices over it, and what becomes of a call to a model with no
/// price.
///
/// In YAML, each model's price is a key of the section; three keys are the section's own:
///
/// ```yaml
/// pricing:
///   gpt-4o: { input: "2.50", output: "10.00", cached_input: "1.25" }  # wins over the catalog
///   my-finetune: { input: "0.30", output: "1.20" }
///   dall-e-3: { per_image: { "*": "0.04", "hd/1024x1792": "0.12" } }  # by quality/size, size, quality, *
///   whisper-1: { per_audio_second: "0.0001" }   # pass-through calls billed by what the answer says
///   providers:                    # a provider that charges its own, by the provider's name
///     azure_eu: { gpt-4o: { input: "2.75", output: "11.00" } }
///   catalog: true                 # the shipped catalog under these (default true)
///   refuse_unpriced: false        # refuse a call to a model with no price (default false)
/// ```
///
/// A model is priced by its exact name, then by the name without a version suffix its provider
/// adds (`-2024-07-18`, `@20241022`, `-v1:0`, `-latest`), never by a prefix: a price for
/// `gpt-4o` never prices `gpt-4o-mini`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PricingConfig {
    /// Whether the shipped catalog's prices apply under the configuration's (default true).
    pub catalog: bool,
    /// Whether a call to a model with no price is refused (a 400 at the gateway) instead of
    /// answered and counted as unpriced (default false).
    pub refuse_unpriced: bool,
    /// The configuration's own prices, by model; they win over the catalog's, its per-cloud
    /// prices included.
    pub models: PricingTable,
    /// Prices a provider of this configuration charges instead, by the provider's name.
    pub providers: BTreeMap<String, BTreeMap<String, ModelPrice>>,
}

impl Default for PricingConfig {
    fn default() -> Self {
        Self {
            catalog: true,
            refuse_unpriced: false,
            models: PricingTable::new(),
            providers: BTreeMap::new(),
        }
    }
}

impl PricingConfig {
    /// The configuration's own prices as a table: the models', and each provider's under its
    /// name.
    pub fn own(&self) -> PricingTable {
        let mut own = self.models.clone();
        for (provider, prices) in &self.providers {
            for (model, price) in prices {
                own.insert_for(provider.as_str(), model.as_str(), *price);
            }
        }
        own
    }

    /// The section with only `models`' prices: no catalog beneath them.
    pub fn only(models: PricingTable) -> Self {
        Self {
            catalog: false,
            models,
            ..Self::default()
        }
    }
}

impl<'de> Deserialize<'de> for PricingConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = PricingConfig;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of model names to prices, with `catalog`, `refuse_unpriced` and `providers`")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PricingConfig, A::Error> {
                let mut config = PricingConfig::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "catalog" => config.catalog = map.next_value()?,
                        "refuse_unpriced" => config.refuse_unpriced = map.next_value()?,
                        "providers" => config.providers = map.next_value()?,
                        _ => {
                            let listing: PriceListing = map.next_value()?;
                            config.models.insert_listing(key, listing);
                        }
                    }
                }
                Ok(config)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Config {
    /// The prices every call is billed at: the catalog's (with each cloud's own prices under
    /// the name of each provider of that cloud) when `pricing.catalog` is on, and the
    /// configuration's own over them.
    pub fn prices(&self) -> PricingTable {
        // A target with a key or base URL of its own calls under its own name: it pays its
        // provider's prices.
        let mut names: Vec<(String, &str)> = self
            .providers
            .keys()
            .map(|name| (name.clone(), name.as_str()))
            .collect();
        for role in self.roles.keys().filter_map(|role| self.role(role)) {
            for target in role.targets {
                if target.client != target.provider
                    && !names.iter().any(|(name, _)| **name == *target.client)
                    && let Some((provider, _)) = self.providers.get_key_value(&*target.provider)
                {
                    names.push((target.client.to_string(), provider.as_str()));
                }
            }
        }
        let mut table = if self.pricing.catalog {
            let clouds = names.iter().filter_map(|(name, provider)| {
                Some((name.as_str(), self.providers[*provider].kind.cloud()?))
            });
            PriceCatalog::shipped().table(clouds)
        } else {
            PricingTable::new()
        };
        let mut own = self.pricing.own();
        for (name, provider) in names.iter().filter(|(name, provider)| name != provider) {
            for (model, price) in self.pricing.providers.get(*provider).into_iter().flatten() {
                own.insert_for(name.as_str(), model.as_str(), *price);
            }
        }
        table.override_with(own);
        table
    }
}

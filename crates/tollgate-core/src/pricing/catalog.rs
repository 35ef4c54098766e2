//! [`PriceCatalog`]: the prices tollgate ships, dated and sourced, under what configuration sets.

use std::{collections::BTreeMap, sync::OnceLock};

use serde::Deserialize;

use super::{ModelPrice, PricingTable, table::PriceEntry};

/// The catalog's file, in the crate beside this source: `prices.json`.
const SHIPPED: &str = include_str!("../../prices.json");

/// A dated price list with its sources: the models' prices, and the prices each cloud charges
/// where it differs (`bedrock`, `vertex`, `azure`, under the cloud's own model ids).
///
/// [`shipped`](Self::shipped) is the catalog in this release (`prices.json`, in US dollars per
/// million tokens). Prices change: a configuration's own prices win over it, and a model it does
/// not list is unpriced, never priced as another. Where a provider charges less at some hours
/// (DeepSeek's off-peak half price), the catalog has the standard rate: a call is never billed
/// under what it may cost.
///
/// ```
/// use tollgate_core::{PriceCatalog, Usage};
///
/// let catalog = PriceCatalog::shipped();
/// assert!(!catalog.date().is_empty());
/// // A table for a configuration with a Bedrock provider named `aws`.
/// let table = catalog.table([("aws", "bedrock")]);
/// let mini = table.get("gpt-4o-mini").unwrap();
/// let four_o = table.get("gpt-4o").unwrap();
/// assert!(mini.input_per_mtok < four_o.input_per_mtok);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceCatalog {
    date: String,
    sources: BTreeMap<String, String>,
    models: PricingTable,
    clouds: BTreeMap<String, BTreeMap<String, ModelPrice>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    date: String,
    unit: String,
    sources: BTreeMap<String, String>,
    models: BTreeMap<String, PriceEntry>,
    #[serde(default)]
    providers: BTreeMap<String, BTreeMap<String, PriceEntry>>,
}

/// The unit every catalog's prices are in.
const UNIT: &str = "US dollars per million tokens";

impl PriceCatalog {
    /// The catalog this release ships.
    pub fn shipped() -> &'static Self {
        static SHIPPED_CATALOG: OnceLock<PriceCatalog> = OnceLock::new();
        SHIPPED_CATALOG
            .get_or_init(|| Self::from_json(SHIPPED).expect("the shipped catalog is checked"))
    }

    /// A catalog in the shipped file's format.
    ///
    /// # Errors
    ///
    /// What is wrong with the text: not JSON, an unknown field, a price that is not dollars, a
    /// unit other than US dollars per million tokens.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let file: CatalogFile = serde_json::from_str(text)?;
        if file.unit != UNIT {
            return Err(serde::de::Error::custom(format!(
                "unit {:?}: a catalog's prices are in {UNIT}",
                file.unit
            )));
        }
        let mut models = PricingTable::new();
        for (model, entry) in file.models {
            let listing = entry
                .split()
                .map_err(|e| serde::de::Error::custom(format!("models.{model}: {e}")))?;
            models.insert_listing(model, listing);
        }
        Ok(Self {
            date: file.date,
            sources: file.sources,
            models,
            clouds: file
                .providers
                .into_iter()
                .map(|(cloud, prices)| {
                    let prices = prices
                        .into_iter()
                        .map(|(model, entry)| {
                            entry.tokens().map(|price| (model, price)).map_err(|e| {
                                serde::de::Error::custom(format!("providers.{cloud}: {e}"))
                            })
                        })
                        .collect::<Result<_, serde_json::Error>>()?;
                    Ok((cloud, prices))
                })
                .collect::<Result<_, serde_json::Error>>()?,
        })
    }

    /// The day the prices were read, `YYYY-MM-DD`.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// Where they were read: a name (`openai`, `bedrock`, ...) and an address.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sources.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The models' own prices.
    pub fn models(&self) -> &PricingTable {
        &self.models
    }

    /// The clouds with prices of their own (`azure`, `bedrock`, `vertex`).
    pub fn clouds(&self) -> impl Iterator<Item = &str> {
        self.clouds.keys().map(String::as_str)
    }

    /// A pricing table for providers named `(name, cloud)`: the models' prices, and for each
    /// provider whose cloud has prices of its own, those under the provider's name.
    pub fn table<'a>(
        &self,
        providers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> PricingTable {
        let mut table = self.models.clone();
        for (name, cloud) in providers {
            for (model, price) in self.clouds.get(cloud).into_iter().flatten() {
                table.insert_for(name, model.as_str(), *price);
            }
        }
        table
    }
}

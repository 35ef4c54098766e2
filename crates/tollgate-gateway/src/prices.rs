//! `tollgate prices [MODEL]`: the prices a configuration bills at (the shipped catalog under its
//! own), every one or the one a model takes, and where each comes from.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use clap::Args;
use tollgate::{Config, MicroUsd, ModelPrice, PriceCatalog, PricingTable};
use tollgate_gateway::GatewayConfig;

/// `tollgate prices`.
#[derive(Args)]
pub(crate) struct PricesCommand {
    /// A model: prints the price it is billed at (on each provider of the configuration whose
    /// price differs) and the name that price is listed under; exit code 1 when it has none.
    model: Option<String>,
    /// A configuration file: its own prices over the catalog, and its providers' clouds. Without
    /// one, the catalog alone.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

pub(crate) fn prices(command: PricesCommand) -> ExitCode {
    let config = match &command.config {
        Some(path) => match GatewayConfig::load(path) {
            Ok(config) => Some(config.stack),
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let catalog = PriceCatalog::shipped();
    // Without a configuration, each cloud's prices are listed under the cloud's name.
    let table = match &config {
        Some(config) => config.prices(),
        None => catalog.table(catalog.clouds().map(|cloud| (cloud, cloud))),
    };
    let own = config.as_ref().map(|config| config.pricing.own());
    let origin = |provider: Option<&str>, name: &str| {
        let configured = own
            .as_ref()
            .and_then(|own| own.lookup(provider, name))
            .is_some_and(|found| found.name == name);
        if configured {
            "configuration".to_owned()
        } else {
            format!("catalog {}", catalog.date())
        }
    };
    let mut out = String::new();
    let code = match &command.model {
        Some(model) => {
            let providers: Vec<&str> = match &config {
                Some(config) => config.providers.keys().map(String::as_str).collect(),
                None => catalog.clouds().collect(),
            };
            one(&mut out, &table, model, &providers, origin)
        }
        None => {
            every(&mut out, &table, config.as_ref(), catalog, origin);
            ExitCode::SUCCESS
        }
    };
    print!("{out}");
    code
}

/// The price `model` is billed at, generally and on each provider that charges its own.
fn one(
    out: &mut String,
    table: &PricingTable,
    model: &str,
    providers: &[&str],
    origin: impl Fn(Option<&str>, &str) -> String,
) -> ExitCode {
    if !tollgate::is_model_id(model) {
        let _ = writeln!(out, "{model:?} is not a model id");
        return ExitCode::FAILURE;
    }
    let mut lines = Vec::new();
    let general = table.lookup(None, model);
    if let Some(found) = general {
        lines.push(format!(
            "{model}: {} (as {}, {})",
            rates(found.price),
            found.name,
            origin(None, found.name)
        ));
    }
    for provider in providers {
        if let Some(found) = table
            .lookup(Some(provider), model)
            .filter(|found| found.providers_own && Some(found.price) != general.map(|g| g.price))
        {
            lines.push(format!(
                "{model} on {provider}: {} (as {}, {})",
                rates(found.price),
                found.name,
                origin(Some(provider), found.name)
            ));
        }
    }
    if lines.is_empty() {
        let _ = writeln!(
            out,
            "{model}: no price (its calls are counted as unpriced, or refused with pricing.refuse_unpriced)"
        );
        return ExitCode::FAILURE;
    }
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    ExitCode::SUCCESS
}

/// Every price: the models', then each provider's own.
fn every(
    out: &mut String,
    table: &PricingTable,
    config: Option<&Config>,
    catalog: &PriceCatalog,
    origin: impl Fn(Option<&str>, &str) -> String,
) {
    let _ = writeln!(
        out,
        "# US dollars per million tokens; the catalog of {} (sources: {})",
        catalog.date(),
        catalog
            .sources()
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if config.is_some_and(|config| !config.pricing.catalog) {
        let _ = writeln!(out, "# the configuration turns the catalog off");
    }
    for model in table.models() {
        let price = table.get(model).expect("listed");
        let _ = writeln!(out, "{model}: {} ({})", rates(price), origin(None, model));
    }
    for (provider, model, price) in table.provider_prices() {
        let _ = writeln!(
            out,
            "{model} on {provider}: {} ({})",
            rates(price),
            origin(Some(provider), model)
        );
    }
}

/// `input $2.50 · cached input $1.25 · output $10.00`, and the long-context tier.
fn rates(price: &ModelPrice) -> String {
    let mut text = format!("input {}", dollars(price.input_per_mtok));
    if let Some(cached) = price.cached_input_per_mtok {
        let _ = write!(text, " · cached input {}", dollars(cached));
    }
    if let Some(write) = price.cache_write_per_mtok {
        let _ = write!(text, " · cache write {}", dollars(write));
    }
    let _ = write!(text, " · output {}", dollars(price.output_per_mtok));
    if let Some(tier) = price.long_context {
        let _ = write!(
            text,
            " · past {} input tokens: input {} · output {}",
            tier.above_input_tokens,
            dollars(tier.input_per_mtok),
            dollars(tier.output_per_mtok)
        );
    }
    text
}

/// `$2.50`: at least two decimals, no trailing zeros past them.
fn dollars(amount: MicroUsd) -> String {
    let text = amount.to_string();
    let trimmed = text.trim_end_matches('0');
    match trimmed.split_once('.') {
        Some((_, decimals)) if decimals.len() < 2 => format!(
            "{trimmed:0<width$}",
            width = trimmed.len() + 2 - decimals.len()
        ),
        _ => trimmed.to_owned(),
    }
}

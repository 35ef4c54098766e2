//! Spend per tenant, provider, model and role, from the usage providers report and the pricing
//! table.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Serialize, Serializer};
use tollgate_core::{MicroUsd, PricingTable, Usage, duration};

/// What a group of calls used and cost. Dollars are exact (integer micro-dollars), written in
/// JSON as decimal strings (`"0.001250"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Spend {
    /// Calls the providers answered.
    pub calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Answer tokens.
    pub output_tokens: u64,
    /// What they cost.
    #[serde(rename = "cost_usd", serialize_with = "dollars")]
    pub cost: MicroUsd,
    /// Calls to models the pricing table has no price for (counted, but not in `cost`).
    pub unpriced_calls: u64,
    /// Streamed calls that ended before their answer did (the caller dropped the stream, or it
    /// failed midway). A provider bills them all the same, so they are counted with the usage it
    /// had reported by then; a side it had not reported is estimated (the prompt from the
    /// request, the answer from the text read), so their tokens and cost are approximate.
    pub incomplete_calls: u64,
}

impl Spend {
    fn add(&mut self, other: &Self) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost = self.cost.saturating_add(other.cost);
        self.unpriced_calls += other.unpriced_calls;
        self.incomplete_calls += other.incomplete_calls;
    }
}

/// One dollar budget of a tenant, from `rate_limiting.tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Budget {
    /// The budget's period.
    #[serde(serialize_with = "period")]
    pub per: Duration,
    /// Dollars per period.
    #[serde(rename = "limit_usd", serialize_with = "dollars")]
    pub limit: MicroUsd,
    /// Dollars left now, from the rate limiter. With the limiter in Redis it is read only by
    /// [`Stack::cost_report_with_remaining`](crate::Stack::cost_report_with_remaining), and absent
    /// when Redis does not answer.
    #[serde(
        rename = "remaining_usd",
        serialize_with = "maybe_dollars",
        skip_serializing_if = "Option::is_none"
    )]
    pub remaining: Option<MicroUsd>,
}

/// A tenant's spend and its budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TenantSpend {
    /// What the tenant's calls used and cost.
    #[serde(flatten)]
    pub spend: Spend,
    /// The tenant's dollar budgets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Budget>,
}

/// Spend since the stack was built (or last [`reset`](CostTracker::reset)), in total and per
/// tenant, provider, model and role. [`to_json`](Self::to_json) writes it out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CostReport {
    /// Every call.
    pub total: Spend,
    /// Per tenant ([`NO_TENANT`] for calls without one).
    pub by_tenant: BTreeMap<String, TenantSpend>,
    /// Per provider.
    pub by_provider: BTreeMap<String, Spend>,
    /// Per model.
    pub by_model: BTreeMap<String, Spend>,
    /// Per role.
    pub by_role: BTreeMap<String, Spend>,
}

impl CostReport {
    /// The report as indented JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report is plain data")
    }
}

/// The name the report gives calls without a tenant: the key the rate limiter counts them under
/// ([`Key::NONE`](tollgate_core::Key::NONE)).
pub const NO_TENANT: &str = "-";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Labels {
    pub(crate) tenant: Option<Arc<str>>,
    pub(crate) provider: Arc<str>,
    pub(crate) model: Arc<str>,
    pub(crate) role: Arc<str>,
}

/// Adds up the usage of every answered call, priced by the pricing table. Cheap to clone; clones
/// share the totals.
#[derive(Debug, Clone)]
pub struct CostTracker {
    pricing: Arc<PricingTable>,
    // Every answered call hashes its four labels; foldhash (randomly seeded, like the limiter's and
    // the breakers' maps) does that several times faster than SipHash.
    spend: Arc<Mutex<HashMap<Labels, Spend, foldhash::fast::RandomState>>>,
}

impl CostTracker {
    pub(crate) fn new(pricing: PricingTable) -> Self {
        Self {
            pricing: Arc::new(pricing),
            spend: Arc::default(),
        }
    }

    /// Adds one answered call; `incomplete` for a stream that ended before its answer did.
    pub(crate) fn record(&self, labels: Labels, usage: Usage, incomplete: bool) {
        let cost = self.pricing.cost(&labels.model, usage);
        let call = Spend {
            calls: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost: cost.unwrap_or_default(),
            unpriced_calls: u64::from(cost.is_none()),
            incomplete_calls: u64::from(incomplete),
        };
        let mut spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        spend.entry(labels).or_default().add(&call);
    }

    /// Spend so far, without budgets (see [`Stack::cost_report`](crate::Stack::cost_report)).
    pub fn report(&self) -> CostReport {
        let spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = CostReport::default();
        for (labels, call) in spend.iter() {
            report.total.add(call);
            let tenant = labels.tenant.as_deref().unwrap_or(NO_TENANT).to_owned();
            report
                .by_tenant
                .entry(tenant)
                .or_insert_with(|| TenantSpend {
                    spend: Spend::default(),
                    budgets: Vec::new(),
                })
                .spend
                .add(call);
            for (map, key) in [
                (&mut report.by_provider, &labels.provider),
                (&mut report.by_model, &labels.model),
                (&mut report.by_role, &labels.role),
            ] {
                map.entry(key.to_string()).or_default().add(call);
            }
        }
        report
    }

    /// Forgets all spend so far.
    pub fn reset(&self) {
        self.spend.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn dollars<S: Serializer>(amount: &MicroUsd, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!(
        "{}.{:06}",
        amount.0 / 1_000_000,
        amount.0 % 1_000_000
    ))
}

fn maybe_dollars<S: Serializer>(
    amount: &Option<MicroUsd>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match amount {
        Some(amount) => dollars(amount, serializer),
        None => serializer.serialize_none(),
    }
}

fn period<S: Serializer>(per: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&duration::format(*per))
}

//! Spend per tenant, provider, model and role, from the usage providers report and the pricing
//! table.
//!
//! # Memory
//!
//! Spend by provider, model and role is exact and needs one line per (provider, model, role)
//! answered: the providers and roles come from the configuration, and the models are those the
//! providers answer to, so no number of tenants grows it. Spend per tenant is kept for at most
//! `costs.max_tenants` tenants ([`DEFAULT_MAX_TENANTS`] unless configured). When a call comes from a
//! new tenant and the table is full, the eighth of the tenants idle longest (by their last
//! answered call) are folded into [`CostReport::other_tenants`] in one pass, so every sum stays
//! exact and the work is spread over many calls. A tenant still calling keeps its own line; one
//! that stopped is the one whose line says least about what happens next.
//!
//! To keep every tenant's line, hand spend off on a timer with [`CostTracker::drain`]: it returns
//! the spend since the last drain and starts again from zero, so a drain taken before
//! `max_tenants` tenants have called folds nothing, and the drains add up to every call.
//!
//! # With Redis
//!
//! The report is this process's: it counts the calls this process answered, and each process of a
//! fleet keeps its own, bounded the same way. What a tenant may still spend is not in the report
//! but in the rate limiter. With the limiter in Redis it is the fleet's: every process admits
//! against the same budget there, and a key expires there once its tiers are full again, so Redis
//! holds the fleet's budgets and no process holds them all. Folding a tenant's line out of a report
//! never touches its budget, and the budget is still enforced.
//! [`Stack::cost_report_with_remaining`](crate::Stack::cost_report_with_remaining) reads what is
//! left of each tenant's budgets from Redis, for the tenants the report holds. For the fleet's
//! spend per tenant, drain every process on a timer and add the drains up where they are shipped.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize, Serializer};
use tollgate_core::{ConfigError, MicroUsd, PricingTable, Usage, duration};
use tollgate_ratelimit::{Calendar, Limiter, RateLimitConfig, Scope, TierStatus};

/// What a group of calls used and cost. Dollars are exact (integer micro-dollars), written in
/// JSON as decimal strings (`"0.001250"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Spend {
    /// Calls the providers answered.
    pub calls: u64,
    /// Prompt tokens, those from the provider's prompt cache included.
    pub input_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache (priced at its cached rate).
    #[serde(skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache (priced at its cache-write rate).
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Answer tokens, reasoning included.
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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Spend {
    fn add(&mut self, other: &Self) {
        self.calls += other.calls;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
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
    /// The budget's period: for a calendar budget, its longest (a day, 7 days, 31 days).
    #[serde(serialize_with = "period")]
    pub per: Duration,
    /// For a calendar budget (`budgets:`), its period and time zone, written `month (UTC)`;
    /// absent for a rolling one (`cost_per_day`, ...).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "calendar")]
    pub calendar: Option<Calendar>,
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

/// Spend since the stack was built (or since the last [`drain`](CostTracker::drain) or
/// [`reset`](CostTracker::reset)), in total and per tenant, provider, model and role.
/// [`to_json`](Self::to_json) writes it out.
///
/// The lines of each breakdown add up to `total`; for tenants, `by_tenant` and `other_tenants`
/// together do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CostReport {
    /// Every call.
    pub total: Spend,
    /// Per tenant ([`NO_TENANT`] for calls without one), for the tenants the tracker holds.
    pub by_tenant: BTreeMap<String, TenantSpend>,
    /// The tenants folded out of `by_tenant` to keep it within `costs.max_tenants`, together.
    /// Absent from the JSON while no tenant was folded.
    #[serde(skip_serializing_if = "OtherTenants::is_empty")]
    pub other_tenants: OtherTenants,
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

/// The spend of tenants that no longer have a line of their own in the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OtherTenants {
    /// Tenant lines folded in. A tenant that called again after its line was folded, and was
    /// folded again, counts once each time.
    pub folded: u64,
    /// What their calls used and cost.
    #[serde(flatten)]
    pub spend: Spend,
}

impl OtherTenants {
    fn is_empty(&self) -> bool {
        self.folded == 0
    }
}

/// The name the report gives calls without a tenant: the key the rate limiter counts them under
/// ([`Key::NONE`](tollgate_core::Key::NONE)).
pub const NO_TENANT: &str = "-";

/// Tenants whose spend the tracker keeps apart unless `costs.max_tenants` says otherwise: about
/// 2 MB of lines (`benches/tenants.rs` measured some 200 bytes a tenant), and a report a person
/// can still read.
pub const DEFAULT_MAX_TENANTS: usize = 10_000;

/// The `costs` section: how the cost tracker keeps spend.
///
/// ```
/// use tollgate::Config;
///
/// let config = Config::from_yaml(r#"
/// providers: { local: { kind: simulated } }
/// roles: { default: { provider: local, model: sim-small } }
/// costs: { max_tenants: 50000 }
/// "#).unwrap();
/// assert_eq!(config.costs.max_tenants, 50_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CostsConfig {
    /// Tenants whose spend is kept apart (default [`DEFAULT_MAX_TENANTS`]); past it, those idle
    /// longest are folded into [`CostReport::other_tenants`]. At least 1.
    pub max_tenants: usize,
}

impl Default for CostsConfig {
    fn default() -> Self {
        Self {
            max_tenants: DEFAULT_MAX_TENANTS,
        }
    }
}

impl CostsConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_tenants == 0 {
            return Err(ConfigError::new("max_tenants", "must be at least 1"));
        }
        Ok(())
    }
}

/// What one answered call is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Labels {
    pub(crate) tenant: Option<Arc<str>>,
    /// Not a line of the report: for the [`OnBilled`](crate::OnBilled) hook.
    pub(crate) principal: Option<Arc<str>>,
    pub(crate) route: Route,
}

/// The provider, model and role of a call: the lines that stay exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Route {
    pub(crate) provider: Arc<str>,
    pub(crate) model: Arc<str>,
    pub(crate) role: Arc<str>,
}

/// Adds up the usage of every answered call, priced by the pricing table. Cheap to clone; clones
/// share the totals. The module docs say how its memory is bounded.
#[derive(Clone)]
pub struct CostTracker {
    pricing: Arc<PricingTable>,
    max_tenants: usize,
    ledger: Arc<Mutex<Ledger>>,
    on_billed: Option<crate::OnBilled>,
}

impl std::fmt::Debug for CostTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CostTracker")
            .field("pricing", &self.pricing)
            .field("max_tenants", &self.max_tenants)
            .field("ledger", &self.ledger)
            .field("on_billed", &self.on_billed.is_some())
            .finish()
    }
}

// Every answered call hashes its labels; foldhash (randomly seeded, like the limiter's and the
// breakers' maps) does that several times faster than SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Ledger {
    routes: FastMap<Route, Spend>,
    tenants: FastMap<Option<Arc<str>>, TenantLine>,
    other: OtherTenants,
    /// Answered calls so far: each tenant line remembers the number of its last one.
    calls: u64,
}

#[derive(Debug)]
struct TenantLine {
    spend: Spend,
    last_call: u64,
}

impl Ledger {
    /// Folds the eighth of the tenant lines idle longest (at least one) into `other`.
    fn fold_idle(&mut self) {
        let fold = (self.tenants.len() / 8).max(1);
        let mut last_calls: Vec<u64> = self.tenants.values().map(|line| line.last_call).collect();
        // Call numbers are unique, so exactly `fold` lines are at or before this one.
        let newest_folded = *last_calls.select_nth_unstable(fold - 1).1;
        let other = &mut self.other;
        self.tenants.retain(|_, line| {
            let keep = line.last_call > newest_folded;
            if !keep {
                other.folded += 1;
                other.spend.add(&line.spend);
            }
            keep
        });
    }
}

impl CostTracker {
    pub(crate) fn new(
        pricing: PricingTable,
        config: &CostsConfig,
        on_billed: Option<crate::OnBilled>,
    ) -> Self {
        debug_assert!(config.max_tenants > 0, "checked with the configuration");
        Self {
            pricing: Arc::new(pricing),
            max_tenants: config.max_tenants,
            ledger: Arc::default(),
            on_billed,
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // Each update leaves the ledger whole, so one a panic interrupted is still good to use.
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The price of `model` when `provider` serves it, when the pricing table has one.
    pub(crate) fn price(&self, provider: &str, model: &str) -> Option<tollgate_core::ModelPrice> {
        self.pricing.get_for(Some(provider), model).copied()
    }

    /// Adds one answered call; `incomplete` for a stream that ended before its answer did.
    /// Adds a billed call, and says what it cost (`None` for a model without a price).
    pub(crate) fn record(
        &self,
        labels: Labels,
        usage: Usage,
        incomplete: bool,
    ) -> Option<MicroUsd> {
        let cost = self
            .pricing
            .get_for(Some(&labels.route.provider), &labels.route.model)
            .map(|price| price.cost(usage));
        self.record_priced(labels, usage, cost, incomplete);
        cost
    }

    /// The prices calls are billed at.
    pub(crate) fn pricing(&self) -> &PricingTable {
        &self.pricing
    }

    /// Adds a billed call whose cost is known already (`None`: unpriced).
    pub(crate) fn record_priced(
        &self,
        labels: Labels,
        usage: Usage,
        cost: Option<MicroUsd>,
        incomplete: bool,
    ) {
        let call = Spend {
            calls: 1,
            input_tokens: usage.input_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            output_tokens: usage.output_tokens,
            cost: cost.unwrap_or_default(),
            unpriced_calls: u64::from(cost.is_none()),
            incomplete_calls: u64::from(incomplete),
        };
        if let Some(hook) = &self.on_billed {
            hook(&crate::BilledCall {
                tenant: labels.tenant.clone(),
                principal: labels.principal.clone(),
                provider: labels.route.provider.clone(),
                model: labels.route.model.clone(),
                role: labels.route.role.clone(),
                usage,
                cost,
                incomplete,
            });
        }
        let mut ledger = self.ledger();
        ledger.calls += 1;
        let number = ledger.calls;
        ledger.routes.entry(labels.route).or_default().add(&call);
        if let Some(line) = ledger.tenants.get_mut(&labels.tenant) {
            line.spend.add(&call);
            line.last_call = number;
            return;
        }
        if ledger.tenants.len() >= self.max_tenants {
            ledger.fold_idle();
        }
        ledger.tenants.insert(
            labels.tenant,
            TenantLine {
                spend: call,
                last_call: number,
            },
        );
    }

    /// Spend so far, without budgets (see [`Stack::cost_report`](crate::Stack::cost_report)).
    pub fn report(&self) -> CostReport {
        report_of(&self.ledger())
    }

    /// Spend since the last drain (or since the stack was built), and starts again from zero, in
    /// one step: no call is counted twice or lost between two drains. Ship it to a database or a
    /// metrics pipeline on a timer; the drains add up to every call.
    ///
    /// ```
    /// use tollgate::{Config, LlmRequest, Message, Stack};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let config = Config::from_yaml(r#"
    /// providers:
    ///   local: { kind: simulated, output_tokens: 10 }
    /// roles:
    ///   default: { provider: local, model: sim-small }
    /// pricing:
    ///   sim-small: { input: "1.00", output: "2.00" }
    /// costs: { max_tenants: 50000 }
    /// "#).unwrap();
    /// let stack = Stack::from_config(&config).unwrap();
    /// let ask = |tenant: &str| LlmRequest::new("", vec![Message::user("hi")]).with_tenant(tenant);
    ///
    /// stack.clone().oneshot(ask("acme")).await.unwrap();
    /// let first = stack.costs().drain();
    /// assert_eq!(first.by_tenant["acme"].spend.cost.0, 7 + 20); // micro-dollars
    ///
    /// stack.clone().oneshot(ask("initech")).await.unwrap();
    /// let second = stack.costs().drain();
    /// assert_eq!(second.total.calls, 1);
    /// assert!(!second.by_tenant.contains_key("acme"));
    /// # }
    /// ```
    pub fn drain(&self) -> CostReport {
        let taken = std::mem::take(&mut *self.ledger());
        report_of(&taken)
    }

    /// Forgets all spend so far.
    pub fn reset(&self) {
        *self.ledger() = Ledger::default();
    }

    /// Tenants with a line of their own now: never more than [`max_tenants`](Self::max_tenants).
    pub fn tenants(&self) -> usize {
        self.ledger().tenants.len()
    }

    /// The most tenants kept apart (`costs.max_tenants`).
    pub fn max_tenants(&self) -> usize {
        self.max_tenants
    }
}

/// Gives each tenant of `report` its budgets under `limits`, with what is left of each from
/// `left` (the limiter's tiers for the tenant; a budget without its tier there has no
/// `remaining`).
pub(crate) fn add_budgets(
    report: &mut CostReport,
    limits: &RateLimitConfig,
    mut left: impl FnMut(&str) -> Vec<TierStatus>,
) {
    for (tenant, spend) in &mut report.by_tenant {
        let Some(own) = limits.tenant_limits(tenant) else {
            continue;
        };
        let tiers = left(tenant);
        spend.budgets = own
            .budget_tiers()
            .into_iter()
            .map(|tier| Budget {
                per: tier.period(),
                limit: MicroUsd(tier.limit()),
                remaining: tiers
                    .iter()
                    .find(|status| status.tier == tier)
                    .map(|status| MicroUsd(status.remaining)),
                calendar: tier.calendar_period().cloned(),
            })
            .collect();
    }
}

/// What is left of the budgets of each tenant of `report` that has any, read from `limiter`
/// under `scope` (from Redis, one read per tenant). A tenant whose state does not come is left
/// out, with a warning.
pub(crate) async fn budgets_left(
    report: &CostReport,
    limits: &RateLimitConfig,
    limiter: &Limiter,
    scope: Scope,
) -> HashMap<String, Vec<TierStatus>> {
    let mut left = HashMap::new();
    for tenant in report.by_tenant.keys() {
        if limits
            .tenant_limits(tenant)
            .is_none_or(|limits| !limits.has_budget())
        {
            continue;
        }
        match limiter.status(scope, tenant).await {
            Ok(status) => {
                left.insert(tenant.clone(), status.tiers);
            }
            Err(error) => tracing::warn!(
                tenant = tenant.as_str(),
                %error,
                "the cost report has no remaining budget for this tenant"
            ),
        }
    }
    left
}

fn report_of(ledger: &Ledger) -> CostReport {
    let mut report = CostReport {
        other_tenants: ledger.other,
        ..CostReport::default()
    };
    for (route, spend) in &ledger.routes {
        report.total.add(spend);
        for (map, key) in [
            (&mut report.by_provider, &route.provider),
            (&mut report.by_model, &route.model),
            (&mut report.by_role, &route.role),
        ] {
            map.entry(key.to_string()).or_default().add(spend);
        }
    }
    for (tenant, line) in &ledger.tenants {
        // A tenant named like NO_TENANT shares its line, as it shares the limiter's key.
        report
            .by_tenant
            .entry(tenant.as_deref().unwrap_or(NO_TENANT).to_owned())
            .or_insert_with(|| TenantSpend {
                spend: Spend::default(),
                budgets: Vec::new(),
            })
            .spend
            .add(&line.spend);
    }
    report
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

fn calendar<S: Serializer>(calendar: &Option<Calendar>, serializer: S) -> Result<S::Ok, S::Error> {
    match calendar {
        Some(calendar) => serializer.collect_str(calendar),
        None => serializer.serialize_none(),
    }
}

fn period<S: Serializer>(per: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&duration::format(*per))
}

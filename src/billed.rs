//! [`BilledCall`]: what the stack tells a hook about each call a provider bills, for a spend
//! ledger of one's own (the gateway's database writes one per key, team, model and day).

use std::sync::Arc;

use tollgate_core::{MicroUsd, Usage};

/// One call a provider billed, as the cost tracker counts it: an answer, a stream however it
/// ended, or a call dropped while the provider worked on it (then `incomplete`, with the prompt
/// estimated).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BilledCall {
    /// The request's tenant (`meta.tenant`).
    pub tenant: Option<Arc<str>>,
    /// The request's principal (`meta.principal`): a user, an API key.
    pub principal: Option<Arc<str>>,
    /// The provider that answered.
    pub provider: Arc<str>,
    /// The model it answered with.
    pub model: Arc<str>,
    /// The role the call named; empty for a call that named a provider directly.
    pub role: Arc<str>,
    /// What the provider reported (or, for an incomplete call, what was estimated).
    pub usage: Usage,
    /// Its price from the pricing table; `None` for a model without one.
    pub cost: Option<MicroUsd>,
    /// A call that ended before its answer did.
    pub incomplete: bool,
}

/// A hook the stack calls once for each billed call, on the task that finished it: keep it
/// short (hand the call to a channel or a buffer).
pub type OnBilled = Arc<dyn Fn(&BilledCall) + Send + Sync>;

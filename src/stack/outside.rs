//! Calls made beside the stack, such as a gateway's raw pass-through of an HTTP call to a
//! provider: counted by the stack's limits, and billed to its cost tracker, its `on_billed` hook
//! and the call's record as the stack's own calls are.

use tollgate_core::{LlmError, LlmRequest, MicroUsd, PricingTable, Usage};

use super::Stack;
use crate::{
    cost::{CostTracker, Labels, Route},
    recorder::CallRecorder,
};

/// A call [`Stack::admit_outside`] let through, to be [`bill`](Self::bill)ed once its answer
/// says what it cost. Dropped unbilled (the call failed), it bills nothing; the request stays
/// counted.
#[must_use = "an outside call is billed with what its answer says"]
#[derive(Debug)]
pub struct OutsideCall {
    admission: Option<tollgate_ratelimit::Admission>,
    costs: CostTracker,
    labels: Labels,
    recorder: Option<CallRecorder>,
}

impl Stack {
    /// Counts a call that does not go down the stack against the stack's request limits, as
    /// a call `request` describes would be counted (its tenant, principal and provider), with
    /// no tokens: the smallest honest way to keep a tenant's request rate over calls that are
    /// not LLM calls. Where a quota counts cost, `hold` (what the call may cost, when that is
    /// known before it runs) is held until the call is billed, and a budget without room for it
    /// refuses the call (see
    /// [`RateLimitLayer::admit_request`](tollgate_ratelimit::RateLimitLayer::admit_request)).
    ///
    /// ```
    /// use tollgate::{Config, LlmRequest, MicroUsd, Stack, Usage};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let config = Config::from_yaml(r#"
    /// providers: { local: { kind: simulated } }
    /// roles: { default: { provider: local, model: sim-small } }
    /// rate_limiting: { tenants: { default: { per_minute: 1 } } }
    /// "#).unwrap();
    /// let stack = Stack::from_config(&config).unwrap();
    /// let mut upload = LlmRequest::new("", vec![]).with_tenant("acme");
    /// upload.provider = Some("local".into());
    /// let call = stack.admit_outside(&upload, MicroUsd::ZERO).await.unwrap();
    /// call.bill(Usage::default(), Some(MicroUsd(40_000)));
    /// assert!(stack.admit_outside(&upload, MicroUsd::ZERO).await.is_err()); // one a minute
    /// assert_eq!(stack.cost_report().by_tenant["acme"].spend.cost, MicroUsd(40_000));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// `RateLimited` or `BudgetExceeded` from the limit that refused.
    pub async fn admit_outside(
        &self,
        request: &LlmRequest,
        hold: MicroUsd,
    ) -> Result<OutsideCall, LlmError> {
        let layer = self
            .parts
            .limits
            .as_ref()
            .and_then(|limits| limits.layer.as_ref());
        let admission = match layer {
            Some(layer) => Some(layer.admit_request(request, hold).await?),
            None => None,
        };
        Ok(OutsideCall {
            admission,
            costs: self.parts.costs.clone(),
            labels: Labels {
                tenant: request.meta.tenant.clone(),
                principal: request.meta.principal.clone(),
                route: Route {
                    provider: request.provider.clone().unwrap_or_default(),
                    model: request.model.clone(),
                    role: request.meta.role.clone().unwrap_or_default(),
                },
            },
            recorder: CallRecorder::of(request).cloned(),
        })
    }

    /// The prices the stack bills at: the catalog's and the configuration's, media prices
    /// included.
    pub fn prices(&self) -> &PricingTable {
        self.parts.costs.pricing()
    }
}

impl OutsideCall {
    /// The call's model, for its bill, when it was learned after admission (from the body or
    /// the answer).
    pub fn with_model(mut self, model: impl Into<std::sync::Arc<str>>) -> Self {
        self.labels.route.model = model.into();
        self
    }

    /// Bills the call: `usage` and `cost` (`None`: unpriced) to the cost tracker and its
    /// `on_billed` hook (the gateway's spend ledger), to the call's record, and `cost` to the
    /// budgets and cost tiers of the keys that admitted it.
    pub fn bill(mut self, usage: Usage, cost: Option<MicroUsd>) {
        if let Some(recorder) = &self.recorder {
            recorder.billed(usage, cost);
        }
        if let Some(admission) = self.admission.take() {
            admission.settle(cost.unwrap_or_default());
        }
        self.costs
            .record_priced(self.labels.clone(), usage, cost, false);
    }
}

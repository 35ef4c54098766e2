//! [`Admission`]: one request counted by a layer's limits without going through its service,
//! for a call made beside the stack (a gateway passing an HTTP call on to a provider as it came).

use std::sync::Arc;

use tollgate_core::{LlmError, LlmRequest, MicroUsd};

use crate::{
    either::{Counted, Keys},
    layer::RateLimitLayer,
    quota::{Amounts, Dimension},
    shared::Shared,
};

impl RateLimitLayer {
    /// Counts one request that is no LLM call against every scope that limits `request` (its
    /// tenant, principal, provider, ... as the layer's services would key it), waiting or
    /// refusing as the layer does on denial. It draws no tokens. Where a quota counts cost,
    /// `hold` (the most the call may cost, when that is known before it runs; at least one
    /// micro-dollar) is held while the call runs, so that a budget without room for it refuses
    /// it; the call's [`Admission::settle`] charges what it cost, and an admission dropped
    /// unsettled gives the hold back (the request stays counted).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{ByTenant, ErrorKind, LlmRequest, MicroUsd};
    /// use tollgate_ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let quota = Quota::new([Tier::requests(1, Duration::from_secs(60))]).unwrap();
    /// let layer = RateLimitLayer::new(RateLimiter::new(quota), ByTenant);
    /// let upload = LlmRequest::new("", vec![]).with_tenant("acme");
    /// let admitted = layer.admit_request(&upload, MicroUsd::ZERO).await.unwrap();
    /// admitted.settle(MicroUsd::ZERO);
    /// let refused = layer.admit_request(&upload, MicroUsd::ZERO).await.unwrap_err();
    /// assert_eq!(refused.kind(), ErrorKind::RateLimited);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// `RateLimited` (or `BudgetExceeded` for a spent cost tier) from the tier that refused,
    /// with its `retry_after`.
    pub async fn admit_request(
        &self,
        request: &LlmRequest,
        hold: MicroUsd,
    ) -> Result<Admission, LlmError> {
        let shared = &self.shared;
        let keys = shared.keys(request);
        let cost = shared.limiter.definition().counts(Dimension::Cost);
        let reserved = if cost {
            Amounts::requests(1).with_cost(MicroUsd(hold.0.max(1)))
        } else {
            Amounts::requests(1)
        };
        if keys.as_slice().is_empty() {
            return Ok(Admission {
                shared: shared.clone(),
                held: None,
            });
        }
        let tried = match shared.limiter.admit_now(keys.as_slice(), reserved) {
            Some(Ok(counted)) => Ok(counted),
            Some(Err(denial)) => Err(Some(denial)),
            None => Err(None),
        };
        let counted = match tried {
            Ok(counted) => counted,
            Err(tried) => match shared
                .limiter
                .admit(keys.as_slice(), reserved, shared.on_limit, tried)
                .await
            {
                Ok((counted, waited)) => {
                    shared.telemetry.waited(waited);
                    counted
                }
                Err(denial) => {
                    shared.telemetry.denied(&denial);
                    return Err(denial.into());
                }
            },
        };
        shared.telemetry.admitted();
        Ok(Admission {
            shared: shared.clone(),
            held: Some((keys, reserved, counted)),
        })
    }
}

/// A request [`RateLimitLayer::admit_request`] let through: settle it with what it cost.
#[must_use = "an admission is settled with what the call cost"]
pub struct Admission {
    shared: Arc<Shared>,
    /// Where it was counted and what it holds; `None` once settled, or when no scope limits it.
    held: Option<(Keys, Amounts, Counted)>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("held", &self.held.as_ref().map(|(_, amounts, _)| amounts))
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Charges `cost` to every key that admitted the call (their cost tiers and budgets), in
    /// place of the micro-dollar held; the request stays counted.
    pub fn settle(mut self, cost: MicroUsd) {
        if let Some((keys, reserved, counted)) = self.held.take() {
            let actual = Amounts::requests(1).with_cost(cost);
            self.shared.limiter.settle(counted, keys, reserved, actual);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some((keys, reserved, counted)) = self.held.take() {
            let unused = reserved.saturating_sub(&Amounts::requests(1));
            self.shared.limiter.give_back(counted, keys, unused);
        }
    }
}

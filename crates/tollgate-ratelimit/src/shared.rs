//! What every clone of a rate-limit layer, its services and their futures share, and what one
//! call carries from its admission to its settlement.

use tollgate_core::{
    AnsweredPrice, ErrorKind, KeyExtractor, LlmError, LlmRequest, LlmResponse, ModelPrice,
    OutputCeiling, PriceCeiling, PricingTable, TokenEstimator, Usage, stream::StreamEnd,
};

use crate::{either::Keys, quota::Dimension};
use crate::{
    either::Limiter,
    limiter::Scope,
    policy::{OnLimit, UnpricedModels},
    quota::Amounts,
};

/// The limiter, the scopes a request is checked against, and how its draw is estimated and settled.
pub(crate) struct Shared {
    pub(crate) limiter: Limiter,
    pub(crate) bindings: Vec<Binding>,
    pub(crate) on_limit: OnLimit,
    pub(crate) estimator: Box<dyn TokenEstimator>,
    /// The output bound of a request that sets none; `None`: the model's known limit, else
    /// [`DEFAULT_MAX_TOKENS`](tollgate_core::DEFAULT_MAX_TOKENS).
    pub(crate) default_output_tokens: Option<u32>,
    pub(crate) pricing: Option<PricingTable>,
    pub(crate) unpriced: UnpricedModels,
    pub(crate) telemetry: crate::telemetry::Telemetry,
}

type Applies = dyn Fn(&LlmRequest) -> bool + Send + Sync;

/// A scope a request is checked against, the key it is checked under, and (for a scope that
/// limits only some requests) which requests.
pub(crate) struct Binding {
    pub(crate) scope: Scope,
    pub(crate) key: Box<dyn KeyExtractor>,
    pub(crate) when: Option<Box<Applies>>,
}

impl Binding {
    pub(crate) fn applies(&self, request: &LlmRequest) -> bool {
        self.when.as_ref().is_none_or(|when| when(request))
    }
}

/// What a call reserved, to settle with its real usage once the answer is in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    pub(crate) amounts: Amounts,
    price: Option<ModelPrice>,
    // The prompt's estimated tokens: what a stream that ends before reporting its usage counts.
    prompt_estimate: u64,
    /// The output bound reserved for a request that set none: the request must carry it to the
    /// provider, so that the answer cannot outgrow the reservation.
    pub(crate) bound: Option<u32>,
    /// Whether tokens were counted when it was made (quotas given at run time may start
    /// counting them; a call settles as it was reserved).
    tokens: bool,
}

impl Reservation {
    /// Whether anything beyond the request count needs settling after the call.
    pub(crate) fn settles(&self) -> bool {
        self.tokens || self.price.is_some()
    }

    /// What a failed call gives back: everything but the request itself, which stays counted.
    pub(crate) fn unused_on_failure(&self) -> Amounts {
        self.amounts.saturating_sub(&Amounts::requests(1))
    }

    /// This reservation, to be settled at the price of the model that gave `answer`, when it
    /// says which ([`AnsweredPrice`]): a call reserved at the dearest model it might reach is
    /// charged what the one that answered costs.
    pub(crate) fn answered(mut self, answer: &LlmResponse) -> Self {
        if let (Some(_), Some(AnsweredPrice(price))) = (self.price, answer.extensions.get()) {
            self.price = Some(*price);
        }
        self
    }
}

impl Shared {
    /// The keys `request` is limited by: one per scope that applies to it.
    pub(crate) fn keys(&self, request: &LlmRequest) -> Keys {
        match self.bindings.as_slice() {
            [one] if one.when.is_none() => Keys::One([(one.scope, one.key.extract(request))]),
            many => Keys::Many(
                many.iter()
                    .filter(|binding| binding.applies(request))
                    .map(|binding| (binding.scope, binding.key.extract(request)))
                    .collect(),
            ),
        }
    }

    /// Whether any quota counts tokens, and whether any counts cost: read on each call, since
    /// quotas given at run time may start counting either.
    fn counting(&self) -> (bool, bool) {
        let definition = self.limiter.definition();
        (
            definition.counts(Dimension::Tokens),
            definition.counts(Dimension::Cost),
        )
    }

    /// What `request` draws: one request, and where quotas count them, its tokens and cost at
    /// the most the provider can bill: the prompt's estimate, and its output bound times the
    /// answers it asks for (`n`, `best_of`).
    pub(crate) fn reserve(
        &self,
        request: &LlmRequest,
        keys: &[(Scope, impl AsRef<str>)],
    ) -> Result<Reservation, LlmError> {
        let mut reservation = Reservation {
            amounts: Amounts::requests(1),
            price: None,
            prompt_estimate: 0,
            bound: None,
            tokens: false,
        };
        let (tokens, cost) = self.counting();
        if !(tokens || cost) {
            return Ok(reservation);
        }
        let input = self.estimator.estimate_prompt(request);
        reservation.prompt_estimate = input;
        let params = &request.params;
        let output = if !request.meta.operation.generates() {
            0
        } else {
            let bound = params.max_tokens.unwrap_or_else(|| {
                let bound = self.default_output_tokens.unwrap_or_else(|| {
                    tollgate_core::known_output_limit(&request.model)
                        .unwrap_or(tollgate_core::DEFAULT_MAX_TOKENS)
                });
                // No model that may answer is sent more than it can write.
                let bound = match request.extensions.get::<OutputCeiling>() {
                    Some(OutputCeiling(most)) => bound.min(*most),
                    None => bound,
                };
                reservation.bound = Some(bound);
                bound
            });
            u64::from(bound).saturating_mul(request.answers())
        };
        if tokens {
            reservation.tokens = true;
            reservation.amounts = reservation
                .amounts
                .with_tokens(input.saturating_add(output));
        }
        if cost {
            // A call that may be answered by another model than its own is reserved at the
            // dearest of them. (Without a pricing table, which a budget given at run time may
            // find, every model is unpriced.)
            let ceiling = request.extensions.get::<PriceCeiling>().map(|c| c.0);
            // The provider's own price when the call names one, else the dearest provider's.
            let listed = self
                .pricing
                .as_ref()
                .and_then(|p| match request.provider.as_deref() {
                    Some(provider) => p.get_for(Some(provider), &request.model).copied(),
                    None => p.dearest(&request.model),
                });
            match ceiling.or(listed) {
                Some(price) => {
                    reservation.price = Some(price);
                    reservation.amounts = reservation
                        .amounts
                        .with_cost(price.cost(Usage::new(input, output)));
                }
                None if self.unpriced == UnpricedModels::Free => {}
                // Only a call one of whose own quotas counts cost needs a price: a budget
                // given to one tenant does not stop another's calls to an unpriced model.
                None if !keys.iter().any(|(scope, key)| {
                    self.limiter
                        .definition()
                        .quota_of(*scope, key.as_ref())
                        .counts(Dimension::Cost)
                }) => {}
                None => {
                    return Err(LlmError::new(
                        ErrorKind::InvalidRequest,
                        format!(
                            "model {:?} has no price in the pricing table, so its cost budget cannot be enforced (set unpriced_models: free to let such calls through)",
                            &*request.model
                        ),
                    ));
                }
            }
        }
        Ok(reservation)
    }

    /// What a streamed call used, once its stream ended as `end` with `answer` read.
    pub(crate) fn streamed(
        &self,
        reservation: &Reservation,
        answer: &LlmResponse,
        end: StreamEnd,
    ) -> Option<Amounts> {
        let usage = match end {
            StreamEnd::Complete => answer.usage,
            // Dropped or failed midway: billed all the same, so it is settled with what it used
            // (estimated where unreported) rather than kept at its reservation, which counts
            // the whole answer it may have taken.
            _ => answer.usage.of_unfinished_stream(
                reservation.prompt_estimate,
                self.estimator.estimate_answer(answer),
            ),
        };
        self.actual(reservation, usage)
    }

    /// What a call actually drew, or `None` when the provider reported no usage (then the
    /// reservation stands, which errs on the safe side).
    pub(crate) fn actual(&self, reservation: &Reservation, usage: Usage) -> Option<Amounts> {
        if usage == Usage::default() {
            return None;
        }
        let mut amounts = Amounts::requests(1);
        if reservation.tokens {
            amounts = amounts.with_tokens(usage.input_tokens + usage.output_tokens);
        }
        if let Some(price) = reservation.price {
            amounts = amounts.with_cost(price.cost(usage));
        }
        self.telemetry.overran(&reservation.amounts, &amounts);
        Some(amounts)
    }
}

//! `RateLimitLayer`: which keys a request is limited by, what it draws, and what to do on denial.

use std::{fmt, sync::Arc, time::Duration};

use tollgate_core::{
    CharEstimator, ConfigError, ErrorKind, Global, KeyExtractor, LlmError, LlmRequest, LlmResponse,
    ModelPrice, PricingTable, TokenEstimator, Usage, stream::StreamEnd,
};
use tower_layer::Layer;

use crate::{
    limiter::{RateLimiter, Scope},
    quota::{Amounts, Dimension},
    service::RateLimit,
};

/// What a layer does when its limiter refuses a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLimit {
    /// Fail at once with `RateLimited` (or `BudgetExceeded`) and the exact `retry_after`.
    #[default]
    Reject,
    /// Wait in a first-come-first-served line for up to this long, then fail as `Reject` does.
    /// A call whose wait is already known to be longer fails at once.
    Wait(Duration),
}

/// What to do with a call to a model the pricing table has no price for, when a quota counts cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnpricedModels {
    /// Refuse it (`InvalidRequest`): a budget that cannot price a call cannot bound it.
    #[default]
    Reject,
    /// Let it through at zero cost.
    Free,
}

/// How long a response waited for the limiter, marked on responses that did wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waited(pub Duration);

/// The limiter a [`RateLimitLayer`] asks: one in this process, or one shared through Redis.
///
/// Both convert into it, so [`RateLimitLayer::new`] takes either.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Limiter {
    /// Quotas held in this process.
    Local(RateLimiter),
    /// Quotas shared by every process through Redis.
    #[cfg(feature = "redis")]
    Redis(crate::RedisRateLimiter),
}

impl Limiter {
    /// The handle of the scope named `name`.
    pub fn scope(&self, name: &str) -> Option<Scope> {
        self.definition().scope(name)
    }

    /// The names of the scopes, in the order they were added.
    pub fn scope_names(&self) -> impl Iterator<Item = &str> {
        self.definition().scope_names()
    }

    /// The in-process limiter, when that is what this is.
    pub(crate) fn local(&self) -> Option<&RateLimiter> {
        match self {
            Self::Local(limiter) => Some(limiter),
            #[cfg(feature = "redis")]
            Self::Redis(_) => None,
        }
    }

    /// The limiter that holds the scopes and quotas (for Redis, its definition).
    pub(crate) fn definition(&self) -> &RateLimiter {
        match self {
            Self::Local(limiter) => limiter,
            #[cfg(feature = "redis")]
            Self::Redis(limiter) => limiter.definition(),
        }
    }
}

impl From<RateLimiter> for Limiter {
    fn from(limiter: RateLimiter) -> Self {
        Self::Local(limiter)
    }
}

#[cfg(feature = "redis")]
impl From<crate::RedisRateLimiter> for Limiter {
    fn from(limiter: crate::RedisRateLimiter) -> Self {
        Self::Redis(limiter)
    }
}

/// Applies a [`RateLimiter`] (or a `RedisRateLimiter` with the `redis` feature) to every request: see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct RateLimitLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) limiter: Limiter,
    pub(crate) bindings: Vec<Binding>,
    pub(crate) on_limit: OnLimit,
    tokens: bool,
    cost: bool,
    estimator: Box<dyn TokenEstimator>,
    default_output_tokens: u64,
    pricing: Option<PricingTable>,
    unpriced: UnpricedModels,
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
}

impl Reservation {
    /// What a failed call gives back: everything but the request itself, which stays counted.
    pub(crate) fn unused_on_failure(&self) -> Amounts {
        self.amounts.saturating_sub(&Amounts::requests(1))
    }
}

impl Shared {
    /// Whether anything beyond the request count needs settling after the call.
    pub(crate) fn settles(&self) -> bool {
        self.tokens || self.cost
    }

    /// What `request` draws: one request, and estimated tokens and cost where quotas count them.
    pub(crate) fn reserve(&self, request: &LlmRequest) -> Result<Reservation, LlmError> {
        let mut reservation = Reservation {
            amounts: Amounts::requests(1),
            price: None,
            prompt_estimate: 0,
        };
        if !self.settles() {
            return Ok(reservation);
        }
        let input = self.estimator.estimate_prompt(request);
        reservation.prompt_estimate = input;
        let output = request
            .params
            .max_output_tokens()
            .unwrap_or(self.default_output_tokens);
        if self.tokens {
            reservation.amounts = reservation
                .amounts
                .with_tokens(input.saturating_add(output));
        }
        if self.cost {
            let pricing = self.pricing.as_ref().expect("checked when built");
            match pricing.get(&request.model) {
                Some(price) => {
                    reservation.price = Some(*price);
                    reservation.amounts = reservation
                        .amounts
                        .with_cost(price.cost(Usage::new(input, output)));
                }
                None if self.unpriced == UnpricedModels::Free => {}
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
                self.estimator.estimate_text(&answer.content),
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
        if self.tokens {
            amounts = amounts.with_tokens(usage.input_tokens + usage.output_tokens);
        }
        if let Some(price) = reservation.price {
            amounts = amounts.with_cost(price.cost(usage));
        }
        Some(amounts)
    }
}

impl RateLimitLayer {
    /// Limits every request by `limiter`'s first scope, keyed by `key` (e.g. `ByTenant`), rejecting
    /// at once on denial.
    ///
    /// # Panics
    ///
    /// If the limiter's quotas count cost (that needs a pricing table: use [`builder`](Self::builder)).
    pub fn new(limiter: impl Into<Limiter>, key: impl KeyExtractor) -> Self {
        Self::builder(limiter)
            .key(Scope::default(), key)
            .build()
            .expect("a quota that counts cost needs RateLimitLayer::builder(..).pricing(..)")
    }

    /// A builder: one key extractor per scope, the denial mode, the token estimator and prices.
    pub fn builder(limiter: impl Into<Limiter>) -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            limiter: limiter.into(),
            bindings: Vec::new(),
            on_limit: OnLimit::Reject,
            estimator: Box::new(CharEstimator),
            default_output_tokens: DEFAULT_OUTPUT_TOKENS,
            pricing: None,
            unpriced: UnpricedModels::Reject,
        }
    }

    /// The limiter, e.g. to read its metrics or a key's status.
    pub fn limiter(&self) -> &Limiter {
        &self.shared.limiter
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.shared.limiter)
            .field("on_limit", &self.shared.on_limit)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.clone())
    }
}

/// Tokens reserved for the answer when a request sets no `max_tokens`, until usage settles it.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 1_024;

/// Builds a [`RateLimitLayer`].
#[must_use]
pub struct RateLimitLayerBuilder {
    limiter: Limiter,
    bindings: Vec<Binding>,
    on_limit: OnLimit,
    estimator: Box<dyn TokenEstimator>,
    default_output_tokens: u64,
    pricing: Option<PricingTable>,
    unpriced: UnpricedModels,
}

impl std::fmt::Debug for RateLimitLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("on_limit", &self.on_limit)
            .field("default_output_tokens", &self.default_output_tokens)
            .field("pricing", &self.pricing)
            .field("unpriced", &self.unpriced)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayerBuilder {
    /// Limits each request by `scope`, under the key `key` extracts (`ByPrincipal` for users,
    /// `ByTenant` for organizations, `Global` for a pool everyone shares). Add one per scope the
    /// request is checked against; all are checked and consumed as one step.
    pub fn key(mut self, scope: Scope, key: impl KeyExtractor) -> Self {
        self.bindings.push(Binding {
            scope,
            key: Box::new(key),
            when: None,
        });
        self
    }

    /// Like [`key`](Self::key), but only requests for which `when` holds are checked against
    /// `scope`; the others pass it by. A request that no bound scope applies to is not limited
    /// at all (nothing is reserved or settled for it).
    ///
    /// For limits that cover some requests only, such as one provider's quota:
    ///
    /// ```
    /// use std::time::Duration;
    /// use tollgate_core::{ByProvider, ErrorKind, LlmRequest, SimulatedProvider};
    /// use tollgate_ratelimit::{Quota, RateLimitLayer, RateLimiter, Tier};
    /// use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let limiter = RateLimiter::builder()
    ///     .scope("provider", Quota::new([Tier::requests(1, Duration::from_secs(60))]).unwrap())
    ///     .build()
    ///     .unwrap();
    /// let scope = limiter.scope("provider").unwrap();
    /// let layer = RateLimitLayer::builder(limiter)
    ///     .key_if(scope, ByProvider, |req: &LlmRequest| req.provider.as_deref() == Some("openai"))
    ///     .build()
    ///     .unwrap();
    /// let service = layer.layer(SimulatedProvider::new());
    /// let call = |provider: &str| {
    ///     service.clone().oneshot(LlmRequest::new("m", vec![]).with_provider(provider))
    /// };
    /// assert!(call("openai").await.is_ok());
    /// assert_eq!(call("openai").await.unwrap_err().kind(), ErrorKind::RateLimited);
    /// assert!(call("local").await.is_ok()); // not limited by this scope
    /// assert!(call("local").await.is_ok());
    /// # }
    /// ```
    pub fn key_if(
        mut self,
        scope: Scope,
        key: impl KeyExtractor,
        when: impl Fn(&LlmRequest) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.bindings.push(Binding {
            scope,
            key: Box::new(key),
            when: Some(Box::new(when)),
        });
        self
    }

    /// What to do on denial (default [`OnLimit::Reject`]).
    pub fn on_limit(mut self, on_limit: OnLimit) -> Self {
        self.on_limit = on_limit;
        self
    }

    /// Counts prompt tokens with `estimator` before the call (default [`CharEstimator`]).
    pub fn estimator(mut self, estimator: impl TokenEstimator) -> Self {
        self.estimator = Box::new(estimator);
        self
    }

    /// Tokens to reserve for the answer of a request without `max_tokens`
    /// (default [`DEFAULT_OUTPUT_TOKENS`]); the real usage settles it afterwards.
    pub fn default_output_tokens(mut self, tokens: u64) -> Self {
        self.default_output_tokens = tokens;
        self
    }

    /// Prices calls for cost tiers.
    pub fn pricing(mut self, pricing: PricingTable) -> Self {
        self.pricing = Some(pricing);
        self
    }

    /// What to do with models the pricing table does not list (default: reject).
    pub fn unpriced_models(mut self, unpriced: UnpricedModels) -> Self {
        self.unpriced = unpriced;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a scope is bound twice or the limiter's quotas count cost and no
    /// pricing table was given. With no key bound, the limiter's first scope is keyed by [`Global`].
    pub fn build(mut self) -> Result<RateLimitLayer, ConfigError> {
        if self.bindings.is_empty() {
            self.bindings.push(Binding {
                scope: Scope::default(),
                key: Box::new(Global),
                when: None,
            });
        }
        for (i, binding) in self.bindings.iter().enumerate() {
            if self.bindings[..i].iter().any(|b| b.scope == binding.scope) {
                return Err(ConfigError::new(
                    format!("keys[{i}]"),
                    "this scope already has a key; a request is checked once per scope",
                ));
            }
        }
        if self.bindings.len() > crate::store::MAX_TARGETS {
            return Err(ConfigError::new(
                "keys",
                format!("at most {} scopes per request", crate::store::MAX_TARGETS),
            ));
        }
        let counts = |dimension| self.limiter.definition().counts(dimension);
        let (tokens, cost) = (counts(Dimension::Tokens), counts(Dimension::Cost));
        if cost && self.pricing.is_none() {
            return Err(ConfigError::new(
                "pricing",
                "a quota has a cost tier, so the layer needs a pricing table to price calls",
            ));
        }
        if let OnLimit::Wait(wait) = self.on_limit {
            tollgate_core::non_zero("wait", wait)?;
        }
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                limiter: self.limiter,
                bindings: self.bindings,
                on_limit: self.on_limit,
                tokens,
                cost,
                estimator: self.estimator,
                default_output_tokens: self.default_output_tokens,
                pricing: self.pricing,
                unpriced: self.unpriced,
            }),
        })
    }
}

//! `RateLimitLayer`: which keys a request is limited by, what it draws, and what to do on denial.

use std::{fmt, sync::Arc};

use tollgate_core::{
    CharEstimator, ConfigError, Global, KeyExtractor, LlmRequest, PricingTable, TokenEstimator,
};
use tower_layer::Layer;

use crate::{
    either::Limiter,
    limiter::Scope,
    policy::{OnLimit, UnpricedModels},
    quota::Dimension,
    service::RateLimit,
    shared::{Binding, Shared},
};

/// Applies a [`RateLimiter`](crate::RateLimiter) (or a `RedisRateLimiter` with the `redis` feature) to every request: see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct RateLimitLayer {
    pub(crate) shared: Arc<Shared>,
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
            default_output_tokens: None,
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

impl<S> RateLimit<S> {
    /// Wraps `inner` in `layer`'s limits.
    pub fn new(inner: S, layer: RateLimitLayer) -> Self {
        Self::from_shared(inner, layer.shared)
    }
}

/// Builds a [`RateLimitLayer`].
#[must_use]
pub struct RateLimitLayerBuilder {
    limiter: Limiter,
    bindings: Vec<Binding>,
    on_limit: OnLimit,
    estimator: Box<dyn TokenEstimator>,
    default_output_tokens: Option<u32>,
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

    /// The output bound of a request without `max_tokens`, where quotas count tokens or cost
    /// (default: the model's own limit where [`known_output_limit`](tollgate_core::known_output_limit)
    /// knows it, else [`DEFAULT_MAX_TOKENS`](tollgate_core::DEFAULT_MAX_TOKENS)).
    ///
    /// It is reserved (times the answers the request asks for), and set as the request's
    /// `max_tokens` on its way to the provider, so the answer cannot outgrow its reservation;
    /// the real usage settles it afterwards. Set it lower for a model with a small context
    /// window, where a prompt and this bound must fit together.
    pub fn default_output_tokens(mut self, tokens: u32) -> Self {
        self.default_output_tokens = Some(tokens);
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
        if self.bindings.len() > crate::quota::MAX_TARGETS {
            return Err(ConfigError::new(
                "keys",
                format!("at most {} scopes per request", crate::quota::MAX_TARGETS),
            ));
        }
        if self.limiter.definition().counts(Dimension::Cost) && self.pricing.is_none() {
            return Err(ConfigError::new(
                "pricing",
                "a quota has a cost tier, so the layer needs a pricing table to price calls",
            ));
        }
        if let OnLimit::Wait(wait) = self.on_limit {
            tollgate_core::non_zero("wait", wait)?;
        }
        if self.default_output_tokens == Some(0) {
            return Err(ConfigError::new(
                "default_output_tokens",
                "must be at least 1: it is the answer's bound",
            ));
        }
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                limiter: self.limiter,
                bindings: self.bindings,
                on_limit: self.on_limit,
                estimator: self.estimator,
                default_output_tokens: self.default_output_tokens,
                pricing: self.pricing,
                unpriced: self.unpriced,
                telemetry: crate::telemetry::Telemetry::register(),
            }),
        })
    }
}

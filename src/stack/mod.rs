//! `Stack`: the recommended layer order around a client per provider, built from a [`Config`].

mod billing;
mod build;
mod clients;
mod dispatch;
mod future;
mod layers;
mod outside;
mod sharing;

use std::{
    collections::HashMap,
    sync::Arc,
    task::{Context, Poll},
};

use tollgate_core::{ErrorKind, LlmError, LlmRequest, LlmResponse};
use tollgate_router::Deadline;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

pub use future::StackFuture;
pub use outside::OutsideCall;

use crate::{
    Config, ConfigErrors, RateLimitingConfig, ResolvedRole,
    cost::{CostReport, CostTracker},
    recorder::{CallRecorder, Recording},
};

/// A provider client as the stack holds it: any `Service<LlmRequest>`, boxed.
pub type BoxedProvider = BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>;

/// The whole stack a [`Config`] describes, as one `Service<LlmRequest>`.
///
/// Each request is routed by its role (`meta.role`, else `default`): the router sends it to one of
/// the role's targets (its provider and model, or one of its `targets`), moving to the next, and
/// then to the role's fallback roles, when one fails. The role's model, temperature and answer
/// bound fill in what the request leaves unset (an empty model, no temperature, no
/// `max_tokens`); a request that names its own provider, or a model the role does not give, goes
/// straight to that provider. Around the providers, in this order from the outside in:
///
/// 1. **cache**: a repeat is answered before it costs any quota or money;
/// 2. **rate limits** (per tenant, per provider, budgets): each request is admitted once, outside
///    the retries and moves, so a retried 429 costs no second permit;
/// 3. the **router** ([`tollgate_router`](crate::router)): balancing, fallbacks, cooldowns from
///    the providers' own headers, bulkheads and hedging, with its `routing` settings; with a
///    `redis` section its cooldowns and the providers' limit readings are shared with every
///    process on that Redis, by a task of the stack's own, off the call path;
/// 4. **retry**, with the provider's own policy and retry budget (`retry.providers`): backoff,
///    `Retry-After`; while the router has somewhere else to send a call it caps the call's
///    retries at its role's `retries_before_move` (0 by default) and a 429 or overload is not
///    retried at all: the call moves;
/// 5. **circuit breaker** per provider, with the provider's own rules (`circuit_breaker.providers`):
///    inside the retries, so it sees and can stop every attempt;
/// 6. **health** per provider, with the provider's own thresholds (`health.providers`): records
///    every attempt's outcome and latency;
/// 7. the provider's client, each call of which the provider bills is added to the
///    [`CostTracker`]: an answer's usage (a stream's at its end), or, for a call dropped while
///    the provider worked on it, the prompt it read.
///
/// A layer whose section is `false` (or, for `caching` and `rate_limiting`, absent) is left out.
///
/// A call is bounded in time by its role's `timeout`, or more tightly by a
/// [`Deadline`](crate::router::Deadline) the request carries: every attempt and move fits in
/// it, a call that has not answered by then fails with `Timeout`, and a stream still running
/// then ends with a `Timeout` error.
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
/// caching: { store: memory }
/// "#).unwrap();
/// let stack = Stack::from_config(&config).unwrap();
///
/// // No model: the role gives it.
/// let ask = || LlmRequest::new("", vec![Message::user("hi")]).with_tenant("acme");
/// let first = stack.clone().oneshot(ask()).await.unwrap();
/// assert_eq!(first.model, "sim-small");
/// let again = stack.clone().oneshot(ask()).await.unwrap();
/// assert_eq!(again.headers["x-cache"], "HIT");
///
/// // One call reached the provider: 7 tokens in, 10 out.
/// let report = stack.cost_report();
/// assert_eq!(report.total.calls, 1);
/// assert_eq!(report.by_tenant["acme"].spend.cost.0, 7 + 20); // micro-dollars
/// # }
/// ```
#[derive(Clone)]
pub struct Stack {
    service: BoxedProvider,
    parts: Arc<Parts>,
}

/// What a role's calls carry where another model than its first may answer: the highest rate
/// any of them charges, and the least output all of them can write.
#[derive(Debug, Clone, Copy, Default)]
struct Ceiling {
    price: Option<tollgate_core::ModelPrice>,
    output: Option<u32>,
}

/// Each role's [`Ceiling`], for roles that have one.
type Ceilings = HashMap<Arc<str>, Ceiling, foldhash::fast::RandomState>;

/// What the stack keeps besides its service: how to resolve roles, and handles on each layer.
struct Parts {
    // Looked up on every call; the names come from the configuration (see the router's map).
    roles: HashMap<Arc<str>, ResolvedRole, foldhash::fast::RandomState>,
    ceilings: Ceilings,
    /// `pricing.refuse_unpriced`: a call naming a model with no price is refused.
    refuse_unpriced: bool,
    default_role: Arc<str>,
    /// Each client's stack, so a request's provider is checked against what serves it.
    providers: Arc<billing::Providers>,
    router: tollgate_router::Router<billing::ProviderStack>,
    /// Whole-call histograms, when a recorder takes them.
    whole: Option<crate::call_metrics::WholeCalls>,
    costs: CostTracker,
    cache: Option<tollgate_cache::CacheLayer>,
    limits: Option<LimitHandles>,
    breakers: Option<tollgate_circuit_breaker::CircuitBreakers>,
    health: Option<tollgate_health::HealthStats>,
    records: Records,
    /// The task sharing the router's deployments' health through Redis: it stops with the
    /// stack.
    _sharing: Option<sharing::Sharing>,
}

/// Whether each call's record is kept, and with what.
#[derive(Clone, Default)]
struct Records {
    /// The hook every call's record goes to, when one was given.
    on_call: Option<crate::OnCall>,
    /// Prompts and answers are kept, up to this many bytes each.
    bodies: Option<usize>,
}

/// The rate limiter and what the cost report needs of it.
struct LimitHandles {
    limiter: tollgate_ratelimit::Limiter,
    /// The layer, for calls made beside the stack ([`Stack::admit_outside`]).
    layer: Option<tollgate_ratelimit::RateLimitLayer>,
    tenant_scope: Option<tollgate_ratelimit::Scope>,
    config: RateLimitingConfig,
}

impl Stack {
    /// The stack `config` describes, with a client for each provider (API keys read from the
    /// environment variables the configuration names).
    ///
    /// # Errors
    ///
    /// Every mistake in the configuration, and what cannot be set up: an API key variable that is
    /// not set, a cache directory that cannot be opened, a provider kind or Redis this build has
    /// no support for (the `providers` and `redis` features).
    pub fn from_config(config: &Config) -> Result<Self, ConfigErrors> {
        Self::builder(config).build()
    }

    /// A builder, to swap in services of your own for some providers.
    pub fn builder(config: &Config) -> StackBuilder<'_> {
        StackBuilder {
            config,
            providers: HashMap::new(),
            env: Box::new(|name| std::env::var(name).ok()),
            clock: None,
            estimator: Arc::new(tollgate_core::CharEstimator),
            wrap: None,
            on_billed: None,
            wall_time: None,
            records: Records::default(),
        }
    }

    /// Spend so far per tenant, provider, model and role, with each tenant's budgets and (for a
    /// limiter in this process) what is left of them. With the limiter in Redis, whose state is
    /// read over the network, [`cost_report_with_remaining`](Self::cost_report_with_remaining)
    /// gives what is left.
    pub fn cost_report(&self) -> CostReport {
        let mut report = self.parts.costs.report();
        if let Some(limits) = &self.parts.limits {
            crate::cost::add_budgets(&mut report, &limits.config, |tenant| {
                limits
                    .tenant_scope
                    .and_then(|scope| limits.limiter.status_now(scope, tenant))
                    .map(|status| status.tiers)
                    .unwrap_or_default()
            });
        }
        report
    }

    /// [`cost_report`](Self::cost_report), with what is left of each tenant's budgets wherever
    /// the limiter keeps them: in this process, or in Redis (one read per tenant with budgets).
    /// A tenant whose state Redis does not give in time has no `remaining` figure, and a
    /// warning says why; the rest of the report is whole.
    pub async fn cost_report_with_remaining(&self) -> CostReport {
        let mut report = self.parts.costs.report();
        if let Some(limits) = &self.parts.limits {
            let mut left = match limits.tenant_scope {
                Some(scope) => {
                    crate::cost::budgets_left(&report, &limits.config, &limits.limiter, scope).await
                }
                None => HashMap::new(),
            };
            crate::cost::add_budgets(&mut report, &limits.config, |tenant| {
                left.remove(tenant).unwrap_or_default()
            });
        }
        report
    }

    /// How much each per-key table of the stack holds now, for an operator watching memory:
    /// every one has a bound (see the crate docs' table of bounds).
    pub fn sizes(&self) -> Sizes {
        let parts = &*self.parts;
        let (limiter_keys, queued_keys, lease_sets) =
            match parts.limits.as_ref().map(|l| &l.limiter) {
                Some(tollgate_ratelimit::Limiter::Local(limiter)) => {
                    (limiter.live_keys(), limiter.queued_keys(), 0)
                }
                #[cfg(feature = "redis")]
                Some(tollgate_ratelimit::Limiter::Redis(limiter)) => {
                    (0, 0, limiter.metrics().lease_sets as usize)
                }
                _ => (0, 0, 0),
            };
        let cache = parts.cache.as_ref().map(|cache| cache.metrics());
        Sizes {
            tenants: parts.costs.tenants(),
            limiter_keys,
            queued_keys,
            lease_sets,
            breaker_keys: parts.breakers.as_ref().map_or(0, |b| b.len()),
            health_components: parts.health.as_ref().map_or(0, |h| h.len()),
            cache_entries: cache.map_or(0, |c| c.entries as usize),
            cache_in_flight: cache.map_or(0, |c| c.in_flight as usize),
        }
    }

    /// The cost tracker.
    pub fn costs(&self) -> &CostTracker {
        &self.parts.costs
    }

    /// The cache layer, when caching is on (for its metrics).
    pub fn cache(&self) -> Option<&tollgate_cache::CacheLayer> {
        self.parts.cache.as_ref()
    }

    /// The rate limiter, when rate limiting is on (for its status and metrics).
    pub fn limiter(&self) -> Option<&tollgate_ratelimit::Limiter> {
        self.parts.limits.as_ref().map(|limits| &limits.limiter)
    }

    /// The circuit breakers (one per provider), when the breaker is on.
    pub fn breakers(&self) -> Option<&tollgate_circuit_breaker::CircuitBreakers> {
        self.parts.breakers.as_ref()
    }

    /// The call statistics (one component per provider whose statistics are on), when health is
    /// on.
    pub fn health(&self) -> Option<&tollgate_health::HealthStats> {
        self.parts.health.as_ref()
    }

    /// Each deployment the router sends to, as it stands now: calls in flight, cooldown, what is
    /// left of its provider's limits, and its counts.
    pub fn deployments(&self) -> Vec<tollgate_router::DeploymentStats> {
        self.parts.router.stats()
    }

    /// What the router has done: moves, hedges, waits, calls with no deployment free.
    pub fn routing(&self) -> tollgate_router::RouterMetrics {
        self.parts.router.metrics()
    }

    /// `request` with its role's settings filled in, as the stack sends it on.
    fn resolve(&self, mut request: LlmRequest) -> Result<LlmRequest, LlmError> {
        let parts = &*self.parts;
        let role_name = request
            .meta
            .role
            .get_or_insert_with(|| parts.default_role.clone())
            .clone();
        let Some(role) = parts.roles.get(&role_name) else {
            let mut known: Vec<&str> = parts.roles.keys().map(|r| &**r).collect();
            known.sort_unstable();
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "no role named {role_name:?} in the configuration (roles: {})",
                    known.join(", ")
                ),
            ));
        };
        let route = dispatch::route(&mut request, role, &parts.providers)?;
        // A role's own models were checked with the configuration; a model the caller named is
        // checked here.
        // (An empty one, with a provider named, is sent as it is, as ever.)
        if route == dispatch::Route::Direct
            && !request.model.is_empty()
            && !tollgate_core::is_model_id(&request.model)
        {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                "the request's model is not a model id (letters, digits and . _ - : / @ +)",
            ));
        }
        if parts.refuse_unpriced && route == dispatch::Route::Direct {
            let provider = request.provider.as_deref().unwrap_or_default();
            if parts.costs.price(provider, &request.model).is_none() {
                return Err(LlmError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "model {:?} has no price, in the catalog or the configuration, and \
                         pricing.refuse_unpriced is on",
                        &*request.model
                    ),
                ));
            }
        }
        if route == (dispatch::Route::Routed { moves: true }) {
            // A call the router may move: a budget reserves at the dearest model that may
            // answer, and bounds it by what they all can write.
            if let Some(ceiling) = parts.ceilings.get(&role_name) {
                if let Some(price) = ceiling.price {
                    request
                        .extensions
                        .insert(tollgate_core::PriceCeiling(price));
                }
                if let Some(most) = ceiling.output {
                    request
                        .extensions
                        .insert(tollgate_core::OutputCeiling(most));
                }
            }
        }
        if request.params.temperature.is_none() {
            request.params.temperature = role.temperature;
        }
        if request.params.max_tokens.is_none() && request.meta.operation.generates() {
            // Written under the name the provider takes (`max_tokens_name` stays unset).
            request.params.max_tokens = role.default_max_tokens;
        }
        if let Some(timeout) = role.timeout {
            let by_role = tokio::time::Instant::now() + timeout;
            let deadline = match request.extensions.get::<Deadline>() {
                Some(Deadline(asked)) => by_role.min(*asked),
                None => by_role,
            };
            request.extensions.insert(Deadline(deadline));
        }
        Ok(request)
    }
}

/// What each per-key table of a [`Stack`] holds now ([`Stack::sizes`]); 0 for a layer that is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Sizes {
    /// Tenants with a line of their own in the cost report (at most `costs.max_tenants`).
    pub tenants: usize,
    /// Keys the rate limiter tracks in this process (at most `rate_limiting.max_keys`); 0 with
    /// the limiter in Redis, where idle keys expire by themselves.
    pub limiter_keys: usize,
    /// Keys with callers waiting for room (`rate_limiting.wait`).
    pub queued_keys: usize,
    /// Key sets holding a lease from Redis (`redis.lease`).
    pub lease_sets: usize,
    /// Providers with a circuit breaker.
    pub breaker_keys: usize,
    /// Providers with call statistics.
    pub health_components: usize,
    /// Answers in the cache's store.
    pub cache_entries: usize,
    /// Distinct requests the cache has calling upstream.
    pub cache_in_flight: usize,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field(
                "providers",
                &self.parts.providers.keys().collect::<Vec<_>>(),
            )
            .field("cache", &self.parts.cache.is_some())
            .field("rate_limiting", &self.parts.limits.is_some())
            .field("circuit_breaker", &self.parts.breakers.is_some())
            .field("health", &self.parts.health.is_some())
            .finish_non_exhaustive()
    }
}

impl Service<LlmRequest> for Stack {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = StackFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, mut request: LlmRequest) -> Self::Future {
        // The limiter, the cache and the cost report need a stream's usage, so the provider is
        // asked for it; a caller who did not ask does not get it.
        let quiet = request.meta.stream && !request.params.include_usage();
        let records = &self.parts.records;
        let recorder = match CallRecorder::of(&request) {
            Some(recorder) => Some(recorder.clone()),
            None => records.on_call.as_ref().map(|hook| {
                let id = request.meta.request_id.clone().unwrap_or_else(|| "".into());
                let recorder = CallRecorder::new(id, hook.clone());
                recorder.attach(&mut request);
                recorder
            }),
        };
        let recording = recorder.map(|recorder| {
            Box::new(Recording {
                recorder,
                bodies: records.bodies,
            })
        });
        match self.resolve(request) {
            Ok(request) => {
                if let Some(recording) = &recording {
                    crate::recorder::asked(&recording.recorder, &request, recording.bodies);
                }
                let span = future::call_span(&request);
                let timing = self.parts.whole.as_ref().map(|whole| {
                    let timed = whole.of(request.meta.operation, &request.model).clone();
                    let started = timed.now();
                    (timed, started)
                });
                let deadline = request.extensions.get::<Deadline>().map(|d| d.0);
                let call = {
                    let _entered = span.enter();
                    self.service.call(request)
                };
                StackFuture::called(call, span, quiet, timing, deadline, recording)
            }
            Err(error) => StackFuture::failed(error, tracing::Span::none(), recording),
        }
    }
}

type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Builds a [`Stack`]; see [`Stack::builder`].
#[must_use]
pub struct StackBuilder<'a> {
    config: &'a Config,
    providers: HashMap<String, BoxedProvider>,
    env: EnvLookup,
    clock: Option<Arc<dyn tollgate_core::clock::Clock>>,
    estimator: Arc<dyn tollgate_core::TokenEstimator>,
    wrap: Option<Box<clients::WrapClient>>,
    on_billed: Option<crate::OnBilled>,
    wall_time: Option<std::time::SystemTime>,
    records: Records,
}

impl std::fmt::Debug for StackBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackBuilder")
            .field("config", &self.config)
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StackBuilder<'_> {
    /// Serves provider `name` with `service` instead of the client its section describes (a
    /// [`SimulatedProvider`](crate::SimulatedProvider) when there is no key, a test double, a
    /// client of your own).
    pub fn provider<S>(mut self, name: impl Into<String>, service: S) -> Self
    where
        S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.providers
            .insert(name.into(), BoxCloneSyncService::new(service));
        self
    }

    /// Reads API keys (and `redis.sentinel.password_env`) through `lookup` instead of the
    /// process environment.
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String> + 'static) -> Self {
        self.env = Box::new(lookup);
        self
    }

    /// Reads time for the rate limiter, the circuit breakers and the health statistics from
    /// `clock` (default: each its own monotonic clock). Tests pass a
    /// [`ManualClock`](crate::clock::ManualClock) or a [`TokioClock`](crate::clock::TokioClock)
    /// on paused time. A limiter in Redis keeps the server's time.
    pub fn clock(mut self, clock: impl tollgate_core::clock::Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Counts tokens with `estimator` wherever the stack estimates them (default
    /// [`CharEstimator`](crate::CharEstimator)): the limiter's reservation before a call, and the
    /// cost report's figures for a stream that ended before the provider reported its usage. One
    /// estimator for both keeps a quota and the report counting alike.
    pub fn estimator(mut self, estimator: impl tollgate_core::TokenEstimator) -> Self {
        self.estimator = Arc::new(estimator);
        self
    }

    /// Wraps each provider's client (the one its section describes, or the one given with
    /// [`provider`](Self::provider)) in what `wrap` makes of it, given the provider's name, before
    /// the provider's retries, breaker and statistics: to time or trace every attempt that reaches
    /// the network, or to inject faults in a test.
    pub fn wrap_clients(
        mut self,
        wrap: impl Fn(&str, BoxedProvider) -> BoxedProvider + 'static,
    ) -> Self {
        self.wrap = Some(Box::new(wrap));
        self
    }

    /// Calls `hook` once for each call a provider bills, with who made it, what answered, its
    /// usage and its price ([`BilledCall`](crate::BilledCall)): for a spend ledger kept
    /// elsewhere, as the gateway keeps one in its database. It runs on the task that finished
    /// the call, so it should only hand the call on.
    pub fn on_billed(mut self, hook: impl Fn(&crate::BilledCall) + Send + Sync + 'static) -> Self {
        self.on_billed = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` once for each call through the stack, with its record
    /// ([`CallRecord`](crate::log::CallRecord)): who made it, what answered, whether the cache
    /// did, how it ended, what every billed attempt used and cost, and how long it took. It is
    /// called when the call is over, after a stream's last event, on the task that finished
    /// it: hand the record to a [`CallLog`](crate::log::CallLog), which writes it off the call
    /// path. A request that carries a [`CallRecorder`](crate::CallRecorder) of its own is
    /// recorded there instead.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tollgate::{Config, LlmRequest, Message, Stack};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let config = Config::from_yaml(r#"
    /// providers: { local: { kind: simulated, output_tokens: 10 } }
    /// roles: { default: { provider: local, model: sim-small } }
    /// pricing: { sim-small: { input: "1.00", output: "2.00" } }
    /// "#).unwrap();
    /// let records = Arc::new(Mutex::new(Vec::new()));
    /// let kept = records.clone();
    /// let stack = Stack::builder(&config)
    ///     .on_call(move |record| kept.lock().unwrap().push(record))
    ///     .build()
    ///     .unwrap();
    /// let ask = LlmRequest::new("", vec![Message::user("hi")]).with_tenant("acme");
    /// stack.oneshot(ask).await.unwrap();
    ///
    /// let record = records.lock().unwrap().pop().unwrap();
    /// assert_eq!(record.team.as_deref(), Some("acme"));
    /// assert_eq!(record.model.as_deref(), Some("sim-small"));
    /// assert_eq!((record.usage.input_tokens, record.usage.output_tokens), (7, 10));
    /// assert_eq!(record.cost.unwrap().0, 7 + 20); // micro-dollars
    /// # }
    /// ```
    pub fn on_call(
        mut self,
        hook: impl Fn(crate::log::CallRecord) + Send + Sync + 'static,
    ) -> Self {
        self.records.on_call = Some(Arc::new(hook));
        self
    }

    /// Keeps each call's prompt (its messages' text, a line per message: `user: …`) and answer
    /// (its text) in its record, up to `max_bytes` each (default: neither is kept). They are redacted by the
    /// [`CallLog`](crate::log::CallLog) before any sink keeps them.
    pub fn record_bodies(mut self, max_bytes: usize) -> Self {
        self.records.bodies = Some(max_bytes);
        self
    }

    /// The wall-clock time the rate limiter's clock reads at build (default: the system's):
    /// calendar budgets count their days, weeks and months from it as the clock advances, so a
    /// test can start a stack a minute before a month ends and see its budgets reset.
    pub fn wall_time(mut self, now: std::time::SystemTime) -> Self {
        self.wall_time = Some(now);
        self
    }

    /// The stack.
    ///
    /// # Errors
    ///
    /// As [`Stack::from_config`].
    pub fn build(self) -> Result<Stack, ConfigErrors> {
        build::build(
            self.config,
            self.providers,
            clients::Hooks {
                env: &*self.env,
                wrap: self.wrap.as_deref(),
                on_billed: self.on_billed,
                wall_time: self.wall_time,
                records: self.records,
            },
            self.clock,
            self.estimator,
        )
    }
}

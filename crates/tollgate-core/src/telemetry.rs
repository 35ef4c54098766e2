//! The names every layer records its metrics under (each layer's `metrics` feature), so a
//! dashboard, a test and the gateway agree on them.
//!
//! Names and attributes follow the OpenTelemetry semantic conventions for generative AI where
//! they exist (`gen_ai.*`, `error.type`); everything tollgate-specific is prefixed `tollgate.`.
//! A Prometheus exporter writes them with underscores (`tollgate_cache_hits`).
//!
//! Labels are bounded by design: providers, models, roles, scopes and deployments come from the
//! configuration, never from a request's text, and tenants are labelled only when asked for,
//! with a cap.

/// `gen_ai.client.operation.duration`: seconds per call, with `gen_ai.operation.name`,
/// `gen_ai.provider.name`, `gen_ai.request.model` and, for a failure, `error.type`.
pub const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// `gen_ai.client.token.usage`: tokens per call, with `gen_ai.token.type` (`input`, `output`).
pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";

/// Calls answered or failed, with `gen_ai.provider.name`, `gen_ai.request.model`, `outcome` (`ok`
/// or the error kind's name) and, when tenant labels are on, `tollgate.tenant`.
pub const REQUESTS: &str = "tollgate.requests";
/// Tokens, with `gen_ai.provider.name`, `gen_ai.request.model` and `gen_ai.token.type` (`input`,
/// `output`, `cached_input`, `reasoning`).
pub const TOKENS: &str = "tollgate.tokens";
/// Cost in micro-dollars, with `gen_ai.provider.name` and `gen_ai.request.model`.
pub const COST: &str = "tollgate.cost.microdollars";
/// Calls billed for a model with no price (their cost is unknown, so counted in no budget's
/// dollars), with `gen_ai.provider.name` and `gen_ai.request.model`.
pub const UNPRICED_CALLS: &str = "tollgate.cost.unpriced_calls";
/// Seconds from a streamed call's start to its first event, with `gen_ai.operation.name` and
/// `gen_ai.request.model`.
pub const TIME_TO_FIRST_TOKEN: &str = "tollgate.time_to_first_token";
/// Seconds per call through a whole stack (cache hits, limits and moves included), with
/// `gen_ai.operation.name`, `gen_ai.request.model` and `outcome`.
pub const CALL_DURATION: &str = "tollgate.call.duration";

/// Cache hits.
pub const CACHE_HITS: &str = "tollgate.cache.hits";
/// Cache misses.
pub const CACHE_MISSES: &str = "tollgate.cache.misses";
/// Calls answered by an identical call already in flight.
pub const CACHE_COALESCED: &str = "tollgate.cache.coalesced";
/// Answers stored.
pub const CACHE_STORES: &str = "tollgate.cache.stores";
/// Answers the store evicted to stay within its bound.
pub const CACHE_EVICTIONS: &str = "tollgate.cache.evictions";
/// Bytes the store holds (as it weighs its entries).
pub const CACHE_BYTES: &str = "tollgate.cache.bytes";
/// Answers the store holds.
pub const CACHE_ENTRIES: &str = "tollgate.cache.entries";

/// Calls the limiter admitted.
pub const LIMITER_ADMITS: &str = "tollgate.limiter.admits";
/// Calls the limiter refused, with `scope` and `dimension` (`requests`, `tokens`, `cost`).
pub const LIMITER_DENIALS: &str = "tollgate.limiter.denials";
/// Calls that waited for room.
pub const LIMITER_WAITS: &str = "tollgate.limiter.waits";
/// Seconds a call waited for room.
pub const LIMITER_WAIT_DURATION: &str = "tollgate.limiter.wait.duration";
/// Tokens calls used beyond what the limiter reserved for them, charged when they settled: a
/// provider that wrote past the `max_tokens` it was sent, or a prompt the estimate undercounted.
pub const LIMITER_OVERRUN_TOKENS: &str = "tollgate.limiter.overrun.tokens";
/// Micro-dollars calls cost beyond what the limiter reserved for them, charged when they
/// settled: the most a cost budget can be passed by.
pub const LIMITER_OVERRUN_COST: &str = "tollgate.limiter.overrun.microdollars";

/// Retries sent (attempts after the first).
pub const RETRY_ATTEMPTS: &str = "tollgate.retry.attempts";
/// Retries the retry budget refused.
pub const RETRY_BUDGET_REFUSALS: &str = "tollgate.retry.budget_refusals";

/// A breaker's state per key: 0 closed, 1 open, 2 half-open (forced states as open / closed).
pub const BREAKER_STATE: &str = "tollgate.breaker.state";
/// Breaker transitions, with `key` and `to` (the new state's name).
pub const BREAKER_TRANSITIONS: &str = "tollgate.breaker.transitions";
/// Calls an open breaker refused, with `key`.
pub const BREAKER_REFUSALS: &str = "tollgate.breaker.refusals";

/// A component's health per key: 1 healthy, 0.5 degraded, 0 unhealthy.
pub const HEALTH_STATUS: &str = "tollgate.health.status";

/// Moves to another deployment after a failure.
pub const ROUTER_MOVES: &str = "tollgate.router.moves";
/// Hedges sent.
pub const ROUTER_HEDGES: &str = "tollgate.router.hedges";
/// Cooldowns, with `deployment` and `reason`.
pub const ROUTER_COOLDOWNS: &str = "tollgate.router.cooldowns";
/// Probes sent to cooling deployments, with `deployment` and `outcome` (`answered`, `failed`,
/// `refused`).
pub const ROUTER_PROBES: &str = "tollgate.router.probes";
/// Counter: notices of a deployment's health (a cooldown, a provider limit reading) shared with
/// other processes, by `way`: `sent` (handed out to share) or `applied` (another's, taken in).
pub const ROUTER_SHARED_NOTICES: &str = "tollgate.router.shared_notices";
/// Counter: reads and writes of the deployments' shared health in Redis that failed; each
/// process routes on what it knows itself meanwhile.
pub const ROUTER_SHARED_FAILURES: &str = "tollgate.router.shared_failures";

/// Counter: masters replaced under a Redis connection (a Cluster failover, or Sentinel naming
/// another master), by `topology`.
pub const REDIS_MASTER_SWITCHES: &str = "tollgate.redis.master_switches";
/// Counter: a Redis rate limiter's switches between Redis and its failure policy, by `to`
/// (`fallback` or `redis`).
pub const LIMITER_BACKEND_SWITCHES: &str = "tollgate.limiter.backend_switches";
/// Call records a log sink did not keep (a full queue, a failed write), by `sink` (counter).
pub const LOG_DROPPED: &str = "tollgate.log.dropped";
/// Call records a log sink wrote, by `sink` (counter).
pub const LOG_WRITTEN: &str = "tollgate.log.written";

/// Label: the provider (`gen_ai.provider.name`).
pub const PROVIDER: &str = "gen_ai.provider.name";
/// Label: the model asked for (`gen_ai.request.model`).
pub const MODEL: &str = "gen_ai.request.model";
/// Label: the operation (`gen_ai.operation.name`: `chat`, `embeddings`).
pub const OPERATION: &str = "gen_ai.operation.name";
/// Label: a failure's type (`error.type`), the error kind's name.
pub const ERROR_TYPE: &str = "error.type";
/// Label: what kind of tokens (`gen_ai.token.type`).
pub const TOKEN_TYPE: &str = "gen_ai.token.type";
/// Label: the tenant, when tenant labels are on.
pub const TENANT: &str = "tollgate.tenant";
/// The tenant label of every tenant past the cap.
pub const OTHER_TENANTS: &str = "other";

/// The bucket bounds OpenTelemetry's conventions give for `gen_ai.client.operation.duration`
/// (seconds).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// The bucket bounds OpenTelemetry's conventions give for `gen_ai.client.token.usage`.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1_024.0,
    4_096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// A counter handle, registered once with the process's `metrics` recorder (core's `metrics`
/// feature) and incremented on each event; without the feature, or with no recorder installed
/// when it was made, incrementing does nothing and costs a branch.
#[derive(Clone)]
pub struct Counter {
    #[cfg(feature = "metrics")]
    inner: metrics::Counter,
}

impl Default for Counter {
    /// A handle that records nothing.
    fn default() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::Counter::noop(),
        }
    }
}

impl Counter {
    /// The counter `name`, with `labels`.
    #[allow(unused_variables)]
    pub fn new(name: &'static str, labels: &[(&'static str, String)]) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::counter!(name, labeled(labels)),
        }
    }

    /// Adds `by`.
    #[inline]
    #[allow(unused_variables)]
    pub fn increment(&self, by: u64) {
        #[cfg(feature = "metrics")]
        self.inner.increment(by);
    }

    /// Sets the count to `value`, for a count kept elsewhere (if it is higher).
    #[inline]
    #[allow(unused_variables)]
    pub fn absolute(&self, value: u64) {
        #[cfg(feature = "metrics")]
        self.inner.absolute(value);
    }
}

/// A gauge handle; as [`Counter`].
#[derive(Clone)]
pub struct Gauge {
    #[cfg(feature = "metrics")]
    inner: metrics::Gauge,
}

impl Default for Gauge {
    /// A handle that records nothing.
    fn default() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::Gauge::noop(),
        }
    }
}

impl Gauge {
    /// The gauge `name`, with `labels`.
    #[allow(unused_variables)]
    pub fn new(name: &'static str, labels: &[(&'static str, String)]) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::gauge!(name, labeled(labels)),
        }
    }

    /// Sets the value.
    #[inline]
    #[allow(unused_variables)]
    pub fn set(&self, value: f64) {
        #[cfg(feature = "metrics")]
        self.inner.set(value);
    }
}

/// A histogram handle; as [`Counter`].
#[derive(Clone)]
pub struct Histogram {
    #[cfg(feature = "metrics")]
    inner: metrics::Histogram,
}

impl Default for Histogram {
    /// A handle that records nothing.
    fn default() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::Histogram::noop(),
        }
    }
}

impl Histogram {
    /// The histogram `name`, with `labels`.
    #[allow(unused_variables)]
    pub fn new(name: &'static str, labels: &[(&'static str, String)]) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            inner: metrics::histogram!(name, labeled(labels)),
        }
    }

    /// Records one value.
    #[inline]
    #[allow(unused_variables)]
    pub fn record(&self, value: f64) {
        #[cfg(feature = "metrics")]
        self.inner.record(value);
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counter")
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gauge")
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Histogram")
    }
}

#[cfg(feature = "metrics")]
fn labeled(labels: &[(&'static str, String)]) -> Vec<metrics::Label> {
    labels
        .iter()
        .map(|(key, value)| metrics::Label::new(*key, value.clone()))
        .collect()
}

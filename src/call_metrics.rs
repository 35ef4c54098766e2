//! Per-call metrics of a [`Stack`](crate::Stack): each call a provider answered or failed, its
//! duration, tokens and cost, under OpenTelemetry's generative-AI names
//! ([`tollgate_core::telemetry`]).
//!
//! Recorded only when the `metrics` feature is on and a recorder was installed before the stack
//! was built; otherwise a call pays nothing. Every label is bounded: providers and models come
//! from the configuration (a model it does not name is `other`), and tenants are labelled only
//! when `metrics.tenant_labels` says so, at most `metrics.max_tenant_labels` of them, every later
//! one as `other`.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock, RwLock},
};

use serde::Deserialize;
use tollgate_core::{
    ConfigError, ErrorKind, ModelPrice, Operation, PricingTable, Usage,
    clock::{Clock, QuantaClock},
    telemetry::{
        CALL_DURATION, COST, Counter, ERROR_TYPE, Histogram, MODEL, OPERATION, OPERATION_DURATION,
        OTHER_TENANTS, PROVIDER, REQUESTS, TENANT, TIME_TO_FIRST_TOKEN, TOKEN_TYPE, TOKEN_USAGE,
        TOKENS, UNPRICED_CALLS,
    },
};

/// The `metrics` section: what per-call series carry besides provider and model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Label calls and cost with their tenant (default false).
    pub tenant_labels: bool,
    /// Tenants with a label of their own (default 100); later ones share `other`. At least 1.
    pub max_tenant_labels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            tenant_labels: false,
            max_tenant_labels: 100,
        }
    }
}

impl MetricsConfig {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// A zero `max_tenant_labels`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_tenant_labels == 0 {
            return Err(ConfigError::new("max_tenant_labels", "must be > 0"));
        }
        Ok(())
    }
}

/// Whether a recorder is installed: `metrics` falls back to a recorder of size zero when none is,
/// and a recorder that records anything keeps its storage in itself (a recorder of size zero,
/// one that forwards to a static of its own, is taken for none).
#[cfg(feature = "metrics")]
fn recorder_installed() -> bool {
    metrics::with_recorder(|recorder| size_of_val(recorder) > 0)
}

#[cfg(not(feature = "metrics"))]
fn recorder_installed() -> bool {
    false
}

/// The series of every (operation, provider, model, tenant) seen, made on first use.
pub(crate) struct CallMetrics {
    models: Vec<Arc<str>>,
    pricing: PricingTable,
    tenants: Option<TenantLabels>,
    series: RwLock<HashMap<SeriesKey, Arc<Series>>>,
    clock: QuantaClock,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    operation: &'static str,
    provider: Arc<str>,
    model: Arc<str>,
    tenant: Option<Arc<str>>,
}

/// The tenants with a label of their own.
struct TenantLabels {
    max: usize,
    labelled: Mutex<HashSet<Arc<str>>>,
}

impl TenantLabels {
    fn label(&self, tenant: Option<&Arc<str>>) -> Arc<str> {
        let tenant = tenant.cloned().unwrap_or_else(|| crate::NO_TENANT.into());
        let mut labelled = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        if labelled.contains(&tenant) {
            return tenant;
        }
        if labelled.len() < self.max {
            labelled.insert(tenant.clone());
            return tenant;
        }
        OTHER_TENANTS.into()
    }
}

const OPERATIONS: [Operation; OPERATION_COUNT] = Operation::ALL;

/// How many operations there are: one series each, per model.
const OPERATION_COUNT: usize = Operation::ALL.len();

fn operation_index(operation: Operation) -> usize {
    operation.index()
}

impl CallMetrics {
    /// The per-call metrics, or `None` when nothing would record them.
    pub(crate) fn new(
        config: &MetricsConfig,
        models: impl IntoIterator<Item = Arc<str>>,
        pricing: PricingTable,
    ) -> Option<Arc<Self>> {
        if !recorder_installed() {
            return None;
        }
        let mut models: Vec<Arc<str>> = models.into_iter().collect();
        models.sort_unstable();
        models.dedup();
        Some(Arc::new(Self {
            models,
            pricing,
            tenants: config.tenant_labels.then(|| TenantLabels {
                max: config.max_tenant_labels,
                labelled: Mutex::new(HashSet::new()),
            }),
            series: RwLock::new(HashMap::new()),
            clock: QuantaClock::new(),
        }))
    }

    /// Client `provider`'s series, registered now for every model the configuration names, so
    /// a call finds its own without a lock.
    pub(crate) fn for_client(self: &Arc<Self>, provider: &Arc<str>) -> ClientMetrics {
        let of = |model: &Arc<str>| OPERATIONS.map(|op| self.series(op, provider, model, None));
        // With tenant labels every call goes through the shared table: nothing to build here
        // (building would spend a tenant label on calls without one).
        let models: &[Arc<str>] = if self.tenants.is_some() {
            &[]
        } else {
            &self.models
        };
        ClientMetrics {
            by_model: models
                .iter()
                .map(|model| (model.clone(), of(model)))
                .collect(),
            other: (self.tenants.is_none()).then(|| of(&Arc::from("other"))),
            provider: provider.clone(),
            shared: self.clone(),
        }
    }

    fn series(
        &self,
        operation: Operation,
        provider: &Arc<str>,
        model: &Arc<str>,
        tenant: Option<&Arc<str>>,
    ) -> Arc<Series> {
        let key = SeriesKey {
            operation: operation.as_str(),
            provider: provider.clone(),
            model: if self.models.binary_search(model).is_ok() {
                model.clone()
            } else {
                Arc::from("other")
            },
            tenant: self.tenants.as_ref().map(|tenants| tenants.label(tenant)),
        };
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return series.clone();
        }
        let mut all = self.series.write().unwrap_or_else(|p| p.into_inner());
        all.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Series::register(
                    key,
                    self.pricing.clone(),
                    self.clock.clone(),
                ))
            })
            .clone()
    }
}

/// Whole calls through the stack, by operation and model: duration, and time to a stream's first
/// event. Built once, read without a lock.
pub(crate) struct WholeCalls {
    by_model: HashMap<Arc<str>, [Arc<Timed>; OPERATION_COUNT], foldhash::fast::RandomState>,
    other: [Arc<Timed>; OPERATION_COUNT],
}

/// One (operation, model)'s whole-call histograms, and the clock they are timed with.
pub(crate) struct Timed {
    duration: Histogram,
    first_event: Histogram,
    clock: QuantaClock,
}

impl CallMetrics {
    /// The whole-call histograms for every model the configuration names.
    pub(crate) fn whole_calls(&self) -> WholeCalls {
        let of = |model: &str| {
            OPERATIONS.map(|op| {
                let labels = [
                    (OPERATION, op.as_str().to_owned()),
                    (MODEL, model.to_owned()),
                ];
                Arc::new(Timed {
                    duration: Histogram::new(CALL_DURATION, &labels),
                    first_event: Histogram::new(TIME_TO_FIRST_TOKEN, &labels),
                    clock: self.clock.clone(),
                })
            })
        };
        WholeCalls {
            by_model: self.models.iter().map(|m| (m.clone(), of(m))).collect(),
            other: of("other"),
        }
    }
}

impl WholeCalls {
    /// The histograms a call for `model` records into.
    pub(crate) fn of(&self, operation: Operation, model: &str) -> &Arc<Timed> {
        let of_model = self.by_model.get(model).unwrap_or(&self.other);
        &of_model[operation_index(operation)]
    }
}

impl Timed {
    /// Nanoseconds on the clock the call is timed with.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// A call that ended (answered, refused or failed) `took` nanoseconds after it began. A
    /// stream's answer is its first event when the router chose its deployment (the router reads
    /// that event before it answers), and the stream's start for a call sent straight to a
    /// provider.
    pub(crate) fn ended(&self, took: u64, stream: bool) {
        self.duration.record(seconds(took));
        if stream {
            self.first_event.record(seconds(took));
        }
    }
}

/// One client's series by model, read without a lock; tenant-labelled series go through the
/// shared table.
pub(crate) struct ClientMetrics {
    // Built once, with the models the configuration names; any other model is `other`.
    by_model: HashMap<Arc<str>, [Arc<Series>; OPERATION_COUNT], foldhash::fast::RandomState>,
    other: Option<[Arc<Series>; OPERATION_COUNT]>,
    provider: Arc<str>,
    shared: Arc<CallMetrics>,
}

impl ClientMetrics {
    /// The series a call for `model` by `tenant` records into.
    pub(crate) fn series(
        &self,
        operation: Operation,
        model: &Arc<str>,
        tenant: Option<&Arc<str>>,
    ) -> Arc<Series> {
        let Some(other) = &self.other else {
            return self.shared.series(operation, &self.provider, model, tenant);
        };
        let of_model = self.by_model.get(&**model).unwrap_or(other);
        of_model[operation_index(operation)].clone()
    }
}

/// One (operation, provider, model, tenant)'s handles.
pub(crate) struct Series {
    key: SeriesKey,
    clock: QuantaClock,
    // The model's price, looked up once; the `other` series looks each call's model up.
    price: Option<ModelPrice>,
    pricing: PricingTable,
    answered: Counter,
    duration: Histogram,
    input: Histogram,
    output: Histogram,
    tokens: [Counter; 4],
    cost: Counter,
    unpriced: OnceLock<Counter>,
    // A failure's series, registered the first time it fails that way.
    failed: [OnceLock<(Counter, Histogram)>; ErrorKind::ALL.len()],
}

impl Series {
    fn register(key: SeriesKey, pricing: PricingTable, clock: QuantaClock) -> Self {
        let base = |extra: &[(&'static str, String)]| {
            let mut labels = vec![
                (OPERATION, key.operation.to_owned()),
                (PROVIDER, key.provider.to_string()),
                (MODEL, key.model.to_string()),
            ];
            labels.extend_from_slice(extra);
            labels
        };
        let tenant: Vec<(&'static str, String)> = key
            .tenant
            .iter()
            .map(|tenant| (TENANT, tenant.to_string()))
            .collect();
        let with_tenant = |extra: &[(&'static str, String)]| {
            let mut labels = base(extra);
            labels.extend_from_slice(&tenant);
            labels
        };
        let tokens = ["input", "output", "cached_input", "reasoning"]
            .map(|kind| Counter::new(TOKENS, &with_tenant(&[(TOKEN_TYPE, kind.to_owned())])));
        Self {
            answered: Counter::new(REQUESTS, &with_tenant(&[("outcome", "ok".to_owned())])),
            duration: Histogram::new(OPERATION_DURATION, &base(&[])),
            input: Histogram::new(TOKEN_USAGE, &base(&[(TOKEN_TYPE, "input".to_owned())])),
            output: Histogram::new(TOKEN_USAGE, &base(&[(TOKEN_TYPE, "output".to_owned())])),
            tokens,
            cost: Counter::new(COST, &with_tenant(&[])),
            unpriced: OnceLock::new(),
            failed: std::array::from_fn(|_| OnceLock::new()),
            price: (&*key.model != "other")
                .then(|| pricing.get_for(Some(&key.provider), &key.model).copied())
                .flatten(),
            key,
            pricing,
            clock,
        }
    }

    /// Nanoseconds on a cheap monotonic clock, to time a call with.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// A call the provider answered, after `took` nanoseconds.
    pub(crate) fn answered(&self, took: u64) {
        self.answered.increment(1);
        self.duration.record(seconds(took));
    }

    /// A call that failed with `kind`, after `took` nanoseconds.
    pub(crate) fn failed(&self, kind: ErrorKind, took: u64) {
        let index = ErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default();
        let (counter, duration) = self.failed[index].get_or_init(|| {
            let mut labels = vec![
                (OPERATION, self.key.operation.to_owned()),
                (PROVIDER, self.key.provider.to_string()),
                (MODEL, self.key.model.to_string()),
            ];
            let timed = {
                let mut timed = labels.clone();
                timed.push((ERROR_TYPE, kind.name().to_owned()));
                Histogram::new(OPERATION_DURATION, &timed)
            };
            labels.push(("outcome", kind.name().to_owned()));
            if let Some(tenant) = &self.key.tenant {
                labels.push((TENANT, tenant.to_string()));
            }
            (Counter::new(REQUESTS, &labels), timed)
        });
        counter.increment(1);
        duration.record(seconds(took));
    }

    /// What a billed call used, and what it cost.
    pub(crate) fn billed(&self, model: &str, usage: Usage) {
        self.input.record(usage.input_tokens as f64);
        self.output.record(usage.output_tokens as f64);
        let counts = [
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.reasoning_tokens,
        ];
        for (counter, count) in self.tokens.iter().zip(counts) {
            // Most answers have no cached or reasoning tokens: no add for those.
            if count > 0 {
                counter.increment(count);
            }
        }
        let cost = match &self.price {
            Some(price) => Some(price.cost(usage)),
            None => self
                .pricing
                .get_for(Some(&self.key.provider), model)
                .map(|price| price.cost(usage)),
        };
        match cost {
            Some(cost) => self.cost.increment(cost.0),
            None => self
                .unpriced
                .get_or_init(|| {
                    let labels = [
                        (PROVIDER, self.key.provider.to_string()),
                        // The series' model: `other` for a model past the bound.
                        (MODEL, self.key.model.to_string()),
                    ];
                    Counter::new(UNPRICED_CALLS, &labels)
                })
                .increment(1),
        }
    }
}

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

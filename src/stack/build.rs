//! Turns a checked [`Config`] into a [`Stack`], in the recommended order from the provider up.

use std::{collections::HashMap, sync::Arc};

use tollgate_circuit_breaker::{CircuitBreakerLayer, CircuitBreakers};
use tollgate_core::{ByProvider, ModelPrice, PricingTable, TokenEstimator, clock::Clock};
use tollgate_health::{HealthLayer, HealthStats};
use tollgate_retry::{RetryLayer, RetryPolicy};
use tollgate_router::{Deployment, Group, GroupConfig, Router};
use tower::{ServiceBuilder, util::BoxCloneSyncService};

use super::{
    BoxedProvider, Parts, Stack,
    billing::{Billed, ProviderStack, Providers},
    clients::{Hooks, clients},
    dispatch::Dispatch,
    layers::{Layers, guards, layers},
};
use crate::{
    Config, ConfigErrors, DEFAULT_ROLE, ResolvedRole, call_metrics::CallMetrics, cost::CostTracker,
};

/// The stack `config` describes: from the provider up, each client under its own retries,
/// breaker and statistics, billed; the router over them; the dispatch that sends a call to the
/// router or straight to its provider; and above it, the limits, then the cache.
pub(super) fn build(
    config: &Config,
    given: HashMap<String, BoxedProvider>,
    hooks: Hooks<'_>,
    clock: Option<Arc<dyn Clock>>,
    estimator: Arc<dyn TokenEstimator>,
) -> Result<Stack, ConfigErrors> {
    config.validate()?;
    let prices = config.prices();
    warn_unpriced(config, &prices);
    let mut errors = Vec::new();
    let clients = clients(config, given, &hooks, &mut errors);
    let Layers {
        cache,
        limits,
        shared,
    } = layers(
        config,
        &prices,
        hooks.env,
        (clock.clone(), hooks.wall_time),
        estimator.clone(),
        &mut errors,
    )?;
    ConfigErrors::check(errors)?;

    let (breakers, health) = guards(config, clock.as_ref());
    let billing = Billing::new(config, &prices, estimator, hooks.on_billed.clone());
    let providers = Arc::new(provider_stacks(
        config,
        clients,
        (breakers.as_ref(), health.as_ref()),
        &billing,
    ));
    let router = router(config, &providers, clock);
    // With a `redis` section, its cooldowns and limit readings are every process's.
    let sharing = shared.map(|shared| shared.start(router.health()));
    let dispatch = Dispatch {
        router: router.clone(),
        providers: providers.clone(),
    };
    let service = ServiceBuilder::new()
        .option_layer(cache.clone())
        .option_layer(limits.as_ref().map(|(layer, _)| layer.clone()))
        .service(dispatch);

    Ok(Stack {
        service: BoxCloneSyncService::new(service),
        parts: Arc::new(Parts {
            roles: roles(config),
            ceilings: ceilings(config, &prices),
            refuse_unpriced: config.pricing.refuse_unpriced,
            default_role: Arc::from(DEFAULT_ROLE),
            providers,
            router,
            whole: billing.calls.as_ref().map(|calls| calls.whole_calls()),
            costs: billing.costs,
            cache,
            limits: limits.map(|(layer, mut limits)| {
                limits.layer = Some(layer);
                limits
            }),
            breakers,
            health,
            records: hooks.records.clone(),
            _sharing: sharing,
        }),
    })
}

/// What every client's calls are billed to: the cost tracker, and per-call metrics.
struct Billing {
    costs: CostTracker,
    estimator: Arc<dyn TokenEstimator>,
    calls: Option<Arc<CallMetrics>>,
}

impl Billing {
    fn new(
        config: &Config,
        prices: &PricingTable,
        estimator: Arc<dyn TokenEstimator>,
        on_billed: Option<crate::OnBilled>,
    ) -> Self {
        // The models per-call metrics may name: those the roles use, and those the
        // configuration prices; any other is `other`.
        let models = config
            .roles
            .keys()
            .filter_map(|role| config.role(role))
            .flat_map(|role| role.targets.into_iter().map(|target| target.model))
            .chain(config.pricing.models.models().map(Arc::from));
        Self {
            costs: CostTracker::new(prices.clone(), &config.costs, on_billed),
            estimator,
            calls: CallMetrics::new(&config.metrics, models, prices.clone()),
        }
    }
}

/// Each role, resolved to its targets.
fn roles(config: &Config) -> HashMap<Arc<str>, ResolvedRole, foldhash::fast::RandomState> {
    config
        .roles
        .keys()
        .filter_map(|name| Some((Arc::from(name.as_str()), config.role(name)?)))
        .collect()
}

/// Each client under its provider's retries (a policy and budget of its own: one provider's
/// outage does not spend the others' retries), over the breakers and statistics every provider
/// shares (keyed by provider), billed.
fn provider_stacks(
    config: &Config,
    clients: HashMap<Arc<str>, (String, BoxedProvider)>,
    (breakers, health): (Option<&CircuitBreakers>, Option<&HealthStats>),
    billing: &Billing,
) -> Providers {
    let breaker = breakers.map(|breakers| {
        CircuitBreakerLayer::builder(breakers.clone())
            .key(ByProvider)
            .build()
    });
    let observe = health.map(|stats| HealthLayer::builder(stats.clone()).key(ByProvider).build());
    clients
        .into_iter()
        .map(|(name, (section, client))| {
            // A target's own client takes its provider's retry, breaker and health settings. The
            // router caps each call's retries where it has somewhere else to send the call.
            let retry = config.retry.for_provider(&section).map(|policy| {
                RetryLayer::new(
                    RetryPolicy::builder()
                        .config(policy.clone())
                        .build()
                        .expect("validated"),
                )
            });
            let breaker = config
                .circuit_breaker
                .for_provider(&section)
                .and(breaker.clone());
            let observe = config.health.for_provider(&section).and(observe.clone());
            let billed = Billed {
                client,
                costs: billing.costs.clone(),
                estimator: billing.estimator.clone(),
                calls: billing
                    .calls
                    .as_ref()
                    .map(|calls| Arc::new(calls.for_client(&name))),
            };
            let stack: ProviderStack = ServiceBuilder::new()
                .option_layer(retry)
                .option_layer(breaker)
                .option_layer(observe)
                .service(billed);
            (name, stack)
        })
        .collect()
}

/// The router over every role's targets: one deployment per target name (a target listed in
/// several roles is one deployment, with one state), one group per role.
fn router(
    config: &Config,
    providers: &Providers,
    clock: Option<Arc<dyn Clock>>,
) -> Router<ProviderStack> {
    let mut builder = Router::builder().config(config.routing.clone());
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in config.roles.keys() {
        let role = config.role(name).expect("validated");
        for target in &role.targets {
            if !seen.insert(target.name.clone()) {
                continue;
            }
            let mut deployment =
                Deployment::new(target.name.clone(), providers[&target.client].clone())
                    .provider(target.client.clone())
                    .model(target.model.clone())
                    .weight(target.weight);
            if let Some(max) = target.max_in_flight {
                deployment = deployment.max_in_flight(max);
            }
            builder = builder.deployment(deployment);
        }
        let own = &config.roles[name];
        builder = builder.group(
            Group::new(
                name.as_str(),
                role.targets.iter().map(|t| t.name.to_string()),
            )
            .config(GroupConfig {
                strategy: own.strategy,
                fallbacks: own.fallbacks.clone(),
                context_window_fallbacks: own.context_window_fallbacks.clone(),
                content_policy_fallbacks: own.content_policy_fallbacks.clone(),
                fallback_on_status: own.fallback_on_status.clone(),
                hedge_after: own.hedge_after,
                wait: own.wait,
                retries_before_move: own.retries_before_move,
                affinity: own.affinity,
                probe: own.probe,
            }),
        );
    }
    let router = builder
        .default_group(DEFAULT_ROLE)
        .build()
        .expect("validated");
    start_probes(&router);
    router
}

/// Spawns the router's probes, when a role asks for them, on the runtime the stack is built in;
/// they end when the stack is dropped.
fn start_probes(router: &Router<ProviderStack>) {
    let Some(probes) = router.probes() else {
        return;
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(probes)),
        Err(_) => tracing::warn!(
            "roles set `probe`, but the stack was built outside a Tokio runtime: no probes are sent"
        ),
    }
}

/// For each role whose calls may be answered by another model than its first: the highest rate
/// of each kind among the models that may answer (what a budget reserves a call at), where it is
/// higher than the first's; and the least output they can all write (the most a call that sets
/// no bound is sent), where it is less than the first's.
fn ceilings(config: &Config, prices: &PricingTable) -> super::Ceilings {
    let limit = |model: &str| {
        tollgate_core::known_output_limit(model).unwrap_or(tollgate_core::DEFAULT_MAX_TOKENS)
    };
    config
        .roles
        .keys()
        .filter_map(|name| {
            let first = config.role(name)?.model;
            let models = config.reachable_models(name);
            // A model's price at the dearest provider that serves it: which one answers is
            // not known before the call.
            let price = models
                .iter()
                .filter_map(|model| prices.dearest(model))
                .reduce(ModelPrice::max)
                .filter(|dearest| Some(*dearest) != prices.dearest(&first));
            let output = models
                .iter()
                .map(|model| limit(model))
                .min()
                .filter(|least| *least < limit(&first));
            (price.is_some() || output.is_some())
                .then(|| (Arc::from(name.as_str()), super::Ceiling { price, output }))
        })
        .collect()
}

/// Says at start which model a role may send calls to has no price: those calls are counted
/// as unpriced, in no budget's dollars.
fn warn_unpriced(config: &Config, prices: &PricingTable) {
    let mut warned = std::collections::BTreeSet::new();
    for role in config.roles.keys().filter_map(|role| config.role(role)) {
        for target in role.targets {
            if prices
                .get_for(Some(&target.provider), &target.model)
                .is_some()
            {
                continue;
            }
            if warned.insert((target.provider.clone(), target.model.clone())) {
                tracing::warn!(
                    provider = %target.provider,
                    model = %target.model,
                    "no price for this model, in the catalog or the configuration: its calls are counted as unpriced (tollgate.cost.unpriced_calls) and in no budget's dollars"
                );
            }
        }
    }
}

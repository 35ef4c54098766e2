//! Building a [`Router`]: its deployments, its groups, its settings, checked in `build()`.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::Notify;
use tollgate_core::{
    ConfigError,
    clock::{Clock, QuantaClock},
};

use crate::{
    affinity::Homes,
    config::{Affinity, GroupConfig, HedgeAfter, ProbeConfig, RouterConfig, Strategy},
    pick::Rng,
    service::Router,
    state::DeploymentState,
    table::{Counters, GroupEntry, Table, Target},
};

/// One place a call can go: a service (a provider's client with its own retry, breaker and
/// health layers), the provider and model it serves, its weight and its bulkhead.
#[derive(Debug, Clone)]
pub struct Deployment<S> {
    name: Arc<str>,
    provider: Option<Arc<str>>,
    model: Option<Arc<str>>,
    weight: u32,
    max_in_flight: Option<u32>,
    service: S,
}

impl<S> Deployment<S> {
    /// A deployment named `name` served by `service`.
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        Self {
            name: name.into(),
            provider: None,
            model: None,
            weight: 1,
            max_in_flight: None,
            service,
        }
    }

    /// Sets each request's `provider` to `provider` on its way here.
    #[must_use]
    pub fn provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Sets each request's `model` to `model` on its way here.
    #[must_use]
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Its share of traffic under the weighted strategy (default 1; must be > 0).
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// At most this many calls at once (must be > 0); unbounded by default.
    #[must_use]
    pub fn max_in_flight(mut self, max: u32) -> Self {
        self.max_in_flight = Some(max);
        self
    }
}

/// A set of deployments that can serve the same calls: a role, or a model.
#[derive(Debug, Clone)]
pub struct Group {
    name: Arc<str>,
    members: Vec<String>,
    config: GroupConfig,
}

impl Group {
    /// A group named `name` of the deployments named `members`, in order (the order the
    /// priority strategy follows).
    pub fn new<I>(name: impl Into<Arc<str>>, members: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            name: name.into(),
            members: members.into_iter().map(Into::into).collect(),
            config: GroupConfig::default(),
        }
    }

    /// Takes every setting from `config`.
    #[must_use]
    pub fn config(mut self, config: GroupConfig) -> Self {
        self.config = config;
        self
    }

    /// How a deployment is chosen (default weighted).
    #[must_use]
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.config.strategy = strategy;
        self
    }

    /// Groups tried in order once every deployment of this one has failed.
    #[must_use]
    pub fn fallbacks<I: IntoIterator<Item = T>, T: Into<String>>(mut self, groups: I) -> Self {
        self.config.fallbacks = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Groups tried in order when a prompt is too long for a deployment's context window.
    #[must_use]
    pub fn context_window_fallbacks<I: IntoIterator<Item = T>, T: Into<String>>(
        mut self,
        groups: I,
    ) -> Self {
        self.config.context_window_fallbacks = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Groups tried in order when a provider's content filter refused a call.
    #[must_use]
    pub fn content_policy_fallbacks<I: IntoIterator<Item = T>, T: Into<String>>(
        mut self,
        groups: I,
    ) -> Self {
        self.config.content_policy_fallbacks = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Upstream HTTP statuses that move a call to the next deployment and then the
    /// [`fallbacks`](Self::fallbacks), whatever their kind (a 404 from a provider that has not
    /// deployed the model, say).
    #[must_use]
    pub fn fallback_on_status<I: IntoIterator<Item = u16>>(mut self, statuses: I) -> Self {
        self.config.fallback_on_status = statuses.into_iter().collect();
        self
    }

    /// Sends a second call to another deployment when the first has not answered in time.
    #[must_use]
    pub fn hedge_after(mut self, after: HedgeAfter) -> Self {
        self.config.hedge_after = Some(after);
        self
    }

    /// Waits in line for room when every deployment is at its `max_in_flight`.
    #[must_use]
    pub fn wait(mut self, wait: bool) -> Self {
        self.config.wait = wait;
        self
    }

    /// Sends calls with the same prompt prefix to the same deployment (see the
    /// [crate docs](crate#prompt-cache-affinity)).
    #[must_use]
    pub fn affinity(mut self, affinity: Affinity) -> Self {
        self.config.affinity = Some(affinity);
        self
    }

    /// Probes its deployments while they cool down (see the [crate docs](crate#active-probes)).
    #[must_use]
    pub fn probe(mut self, probe: ProbeConfig) -> Self {
        self.config.probe = Some(probe);
        self
    }
}

/// Builds a [`Router`]; see [`Router::builder`].
#[must_use]
pub struct RouterBuilder<S> {
    deployments: Vec<Deployment<S>>,
    groups: Vec<Group>,
    default_group: Option<String>,
    config: RouterConfig,
    clock: Option<Arc<dyn Clock>>,
}

impl<S> std::fmt::Debug for RouterBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("groups", &self.groups)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S> Router<S> {
    /// A builder with no deployments and the default [`RouterConfig`].
    pub fn builder() -> RouterBuilder<S> {
        RouterBuilder {
            deployments: Vec::new(),
            groups: Vec::new(),
            default_group: None,
            config: RouterConfig::default(),
            clock: None,
        }
    }
}

impl<S> RouterBuilder<S> {
    /// Adds a deployment.
    pub fn deployment(mut self, deployment: Deployment<S>) -> Self {
        self.deployments.push(deployment);
        self
    }

    /// Adds a group.
    pub fn group(mut self, group: Group) -> Self {
        self.groups.push(group);
        self
    }

    /// The group a request without a role goes to (default: a group named `default`, if any).
    pub fn default_group(mut self, name: impl Into<String>) -> Self {
        self.default_group = Some(name.into());
        self
    }

    /// Router-wide settings.
    pub fn config(mut self, config: RouterConfig) -> Self {
        self.config = config;
        self
    }

    /// Reads time for cooldowns and latencies from `clock` (default: a monotonic TSC clock).
    /// Tests on paused time pass a [`TokioClock`](tollgate_core::clock::TokioClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The router.
    ///
    /// # Errors
    ///
    /// The first mistake: a name used twice, a zero weight or bulkhead, a group with no
    /// deployments or naming one (or a fallback group) that does not exist, a default group that
    /// does not exist, a zero hedge time or probe interval, or a setting out of range.
    pub fn build(self) -> Result<Router<S>, ConfigError> {
        if let Some(mistake) = self.config.mistakes().into_iter().next() {
            return Err(mistake);
        }
        let seed = self.config.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x5EED, |d| d.as_nanos() as u64)
        });
        let mut index = HashMap::new();
        for (i, deployment) in self.deployments.iter().enumerate() {
            let at = |field: &str| format!("deployments.{}.{field}", deployment.name);
            if index.insert(deployment.name.clone(), i).is_some() {
                return Err(ConfigError::new(at("name"), "used by two deployments"));
            }
            if deployment.weight == 0 {
                return Err(ConfigError::new(at("weight"), "must be > 0"));
            }
            if deployment.max_in_flight == Some(0) {
                return Err(ConfigError::new(at("max_in_flight"), "must be > 0"));
            }
        }
        let mut group_index = HashMap::new();
        for (i, group) in self.groups.iter().enumerate() {
            if group_index.insert(group.name.clone(), i).is_some() {
                return Err(ConfigError::new(
                    format!("groups.{}", group.name),
                    "used by two groups",
                ));
            }
        }
        let mut groups = Vec::with_capacity(self.groups.len());
        let mut timed = vec![false; self.deployments.len()];
        let mut percentile = vec![false; self.deployments.len()];
        let mut wake: Vec<Vec<Arc<Notify>>> = vec![Vec::new(); self.deployments.len()];
        for group in self.groups {
            let at = |field: &str| format!("groups.{}.{field}", group.name);
            if group.members.is_empty() {
                return Err(ConfigError::new(at("members"), "must name a deployment"));
            }
            let mut members = Vec::with_capacity(group.members.len());
            for member in &group.members {
                let Some(&i) = index.get(member.as_str()) else {
                    return Err(ConfigError::new(
                        at("members"),
                        format!("no deployment named {member:?}"),
                    ));
                };
                if members.contains(&i) {
                    return Err(ConfigError::new(
                        at("members"),
                        format!("{member:?} is listed twice"),
                    ));
                }
                members.push(i);
            }
            let config = group.config;
            let mut lists = [Vec::new(), Vec::new(), Vec::new()];
            for (field, name) in config.named_groups() {
                let Some(&g) = group_index.get(name) else {
                    return Err(ConfigError::new(
                        at(field),
                        format!("no group named {name:?}"),
                    ));
                };
                if *name == *group.name {
                    return Err(ConfigError::new(at(field), "names the group itself"));
                }
                let list = match field {
                    "fallbacks" => 0,
                    "context_window_fallbacks" => 1,
                    _ => 2,
                };
                lists[list].push(g);
            }
            match config.hedge_after {
                Some(HedgeAfter::After(after)) if after.is_zero() => {
                    return Err(ConfigError::new(at("hedge_after"), "must be > 0"));
                }
                Some(HedgeAfter::P95) => members.iter().for_each(|&i| percentile[i] = true),
                _ => {}
            }
            if let Some(ProbeConfig { every }) = config.probe
                && every.is_zero()
            {
                return Err(ConfigError::new(at("probe.every"), "must be > 0"));
            }
            let affinity = config.affinity.map(|Affinity::Prefix| {
                let names = members.iter().map(|&i| &*self.deployments[i].name);
                Homes::new(seed, names)
            });
            if config.strategy == Strategy::Latency {
                members.iter().for_each(|&i| timed[i] = true);
            }
            let room = config.wait.then(|| Arc::new(Notify::new()));
            if let Some(room) = &room {
                members.iter().for_each(|&i| wake[i].push(room.clone()));
            }
            let [fallbacks, context_window, content_policy] = lists;
            let can_move = members.len() > 1 || config.has_fallbacks();
            if config.probe.is_some() && !can_move {
                return Err(ConfigError::new(
                    at("probe"),
                    "the group has nowhere else to go: its deployment is called while it cools \
                     down, so there is nothing for a probe to bring back",
                ));
            }
            groups.push(GroupEntry {
                can_move,
                name: group.name,
                members,
                config,
                fallbacks,
                context_window,
                content_policy,
                room,
                affinity,
            });
        }
        let default_group = match &self.default_group {
            Some(name) => Some(*group_index.get(name.as_str()).ok_or_else(|| {
                ConfigError::new("default_group", format!("no group named {name:?}"))
            })?),
            None => group_index.get("default").copied(),
        };
        let clocked = timed.iter().chain(&percentile).any(|t| *t);
        let mut targets = Vec::with_capacity(self.deployments.len());
        let mut states = Vec::with_capacity(self.deployments.len());
        for (i, deployment) in self.deployments.into_iter().enumerate() {
            let mut state = DeploymentState::new(
                deployment.name,
                deployment.weight,
                deployment.max_in_flight,
                timed[i],
                percentile[i],
            );
            state.wake = std::mem::take(&mut wake[i]);
            states.push(Arc::new(state));
            targets.push(Target {
                service: deployment.service,
                provider: deployment.provider,
                model: deployment.model,
            });
        }
        let by_name = groups
            .iter()
            .enumerate()
            .map(|(i, group)| (group.name.clone(), i))
            .collect();
        Ok(Router {
            table: Arc::new(Table {
                targets,
                states,
                groups,
                by_name,
                default_group,
                clock: self.clock.unwrap_or_else(|| Arc::new(QuantaClock::new())),
                rng: Rng::new(seed),
                config: self.config,
                counters: Counters::register(),
                clocked: std::sync::atomic::AtomicBool::new(clocked),
            }),
        })
    }
}

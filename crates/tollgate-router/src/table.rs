//! The router's shared table: each deployment's service and state, each group, the settings,
//! and the router-wide counters. Built once; every call reads it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
};

use tokio::sync::Notify;
use tollgate_core::clock::Clock;

use crate::{
    affinity::Homes,
    config::{GroupConfig, RouterConfig},
    pick::Rng,
    state::DeploymentState,
};

/// A deployment's service and what the router writes into the requests it sends there.
pub(crate) struct Target<S> {
    pub(crate) service: S,
    pub(crate) provider: Option<Arc<str>>,
    pub(crate) model: Option<Arc<str>>,
}

/// A group, its members and where its calls go next, all by index.
#[derive(Debug)]
pub(crate) struct GroupEntry {
    pub(crate) name: Arc<str>,
    pub(crate) members: Vec<usize>,
    pub(crate) config: GroupConfig,
    pub(crate) fallbacks: Vec<usize>,
    pub(crate) context_window: Vec<usize>,
    pub(crate) content_policy: Vec<usize>,
    /// Woken when a member has room, for calls waiting in line (`wait: true`).
    pub(crate) room: Option<Arc<Notify>>,
    /// Whether a call may go elsewhere: more than one member, or fallbacks. A group with
    /// nowhere else to go does not skip its cooling deployment.
    pub(crate) can_move: bool,
    /// Each prompt prefix's deployment, for a group with `affinity: prefix`.
    pub(crate) affinity: Option<Homes>,
}

pub(crate) struct Table<S> {
    pub(crate) targets: Vec<Target<S>>,
    pub(crate) states: Vec<Arc<DeploymentState>>,
    pub(crate) groups: Vec<GroupEntry>,
    // Looked up on every call by the request's role; the names come from the builder, so a fast
    // hash needs no protection from keys chosen to collide.
    pub(crate) by_name: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    pub(crate) default_group: Option<usize>,
    pub(crate) config: RouterConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Rng,
    pub(crate) counters: Counters,
    /// Whether any decision needs the time: a latency is measured, or some deployment has been
    /// cooled down or told its limits. Until then a call reads no clock (every stored time is 0,
    /// so time 0 reads them all right).
    pub(crate) clocked: AtomicBool,
}

impl<S> Table<S> {
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// The time, or 0 while no decision needs it.
    pub(crate) fn now_if_needed(&self) -> u64 {
        if self.clocked.load(Relaxed) {
            self.now()
        } else {
            0
        }
    }

    /// Gives back the place of a call dropped before it ended.
    pub(crate) fn abandon(&self, ticket: crate::attempt::Ticket) {
        let state = &self.states[ticket.index];
        state.dropped();
        state.leave();
    }

    /// From now on every call reads the clock.
    pub(crate) fn needs_clock(&self) {
        if !self.clocked.load(Relaxed) {
            self.clocked.store(true, Relaxed);
        }
    }
}

/// Router-wide counts, and (feature `metrics`) their handles in the process's recorder.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) recorded_moves: tollgate_core::telemetry::Counter,
    pub(crate) recorded_hedges: tollgate_core::telemetry::Counter,
    pub(crate) moves: AtomicU64,
    pub(crate) hedges: AtomicU64,
    pub(crate) hedge_wins: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) none_available: AtomicU64,
    pub(crate) deadlines: AtomicU64,
}

impl Counters {
    /// Counts with their handles registered in the recorder installed now.
    pub(crate) fn register() -> Self {
        use tollgate_core::telemetry::{Counter, ROUTER_HEDGES, ROUTER_MOVES};
        Self {
            recorded_moves: Counter::new(ROUTER_MOVES, &[]),
            recorded_hedges: Counter::new(ROUTER_HEDGES, &[]),
            ..Self::default()
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RouterMetrics {
        RouterMetrics {
            moves: self.moves.load(Relaxed),
            hedges: self.hedges.load(Relaxed),
            hedge_wins: self.hedge_wins.load(Relaxed),
            waits: self.waits.load(Relaxed),
            none_available: self.none_available.load(Relaxed),
            deadlines: self.deadlines.load(Relaxed),
        }
    }
}

/// What the router has done since it was built ([`Router::metrics`](crate::Router::metrics)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterMetrics {
    /// Moves to another deployment after a failure (hedges not included).
    pub moves: u64,
    /// Second calls sent because the first was slow.
    pub hedges: u64,
    /// Hedges that answered first.
    pub hedge_wins: u64,
    /// Calls that waited in line for room (`wait: true`).
    pub waits: u64,
    /// Calls that found no deployment able to take them.
    pub none_available: u64,
    /// Calls cut off by the deadline.
    pub deadlines: u64,
}

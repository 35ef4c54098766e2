//! Single-flight: concurrent identical misses share one upstream call.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::Notify;
use tollgate_core::{LlmError, LlmResponse};

use crate::CacheKey;

/// How a shared call ended.
#[derive(Clone)]
// One per call on its way to the caller: boxing the answer would add an allocation to every
// hit for no memory saved.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Landing {
    Answer(LlmResponse),
    Error(LlmError),
    /// The leader was dropped before it finished: followers try again.
    Abandoned,
}

pub(crate) struct Flight {
    landing: OnceLock<Landing>,
    landed: Notify,
}

impl Flight {
    /// Waits for the leader's result.
    pub(crate) async fn wait(&self) -> Landing {
        loop {
            let landed = self.landed.notified();
            tokio::pin!(landed);
            // Registered before the check, so a landing between the two is not missed.
            landed.as_mut().enable();
            if let Some(landing) = self.landing.get() {
                return landing.clone();
            }
            landed.await;
        }
    }
}

// Keys are SHA-256 outputs: a fast hasher spreads them as well as SipHash would.
type FlightMap = HashMap<CacheKey, Arc<Flight>, foldhash::fast::RandomState>;

/// The calls in flight, by key.
#[derive(Default)]
pub(crate) struct Flights {
    flights: Mutex<FlightMap>,
    /// Flights landed so far: a new leader looks in the store again only if one landed since its
    /// own lookup, which is what lets a lone miss skip that second lookup.
    landings: AtomicU64,
}

/// Either lead a new call or follow the one in flight.
pub(crate) enum Role {
    Leader(Lead),
    Follower(Arc<Flight>),
}

/// A leader's duty: land its flight exactly once, even if dropped.
pub(crate) struct Lead {
    flights: Arc<Flights>,
    key: CacheKey,
    flight: Arc<Flight>,
    landed: bool,
}

impl Lead {
    /// Lands with `landing()`, made only if a follower is waiting for it (an answer is cloned for
    /// followers, and most misses have none).
    pub(crate) fn land(mut self, landing: impl FnOnce() -> Landing) {
        self.finish(landing);
    }

    fn finish(&mut self, landing: impl FnOnce() -> Landing) {
        self.landed = true;
        {
            let mut flights = self.flights.lock();
            flights.remove(&self.key);
            // Counted after the answer was stored (Release) and before the lock is let go, so a
            // leader that joins after this sees the count change.
            self.flights.landings.fetch_add(1, Ordering::Release);
        }
        // Out of the map, the flight gains no new followers: if the lead holds the only handle,
        // nobody waits.
        if Arc::strong_count(&self.flight) > 1 {
            let _ = self.flight.landing.set(landing());
            self.flight.landed.notify_waiters();
        }
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if !self.landed {
            self.finish(|| Landing::Abandoned);
        }
    }
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, FlightMap> {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Flights landed so far; read it before a lookup, and compare after [`Self::join`] leads.
    pub(crate) fn landings(&self) -> u64 {
        // Acquire: a landing seen here was stored before it was counted, so the lookup after
        // this read finds the answer.
        self.landings.load(Ordering::Acquire)
    }

    /// Calls in flight now: one per distinct request that missed and has not landed, so never
    /// more than the calls under way.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn join(self: &Arc<Self>, key: CacheKey) -> Role {
        let mut flights = self.lock();
        if let Some(flight) = flights.get(&key) {
            return Role::Follower(flight.clone());
        }
        let flight = Arc::new(Flight {
            landing: OnceLock::new(),
            landed: Notify::new(),
        });
        flights.insert(key, flight.clone());
        Role::Leader(Lead {
            flights: self.clone(),
            key,
            flight,
            landed: false,
        })
    }
}

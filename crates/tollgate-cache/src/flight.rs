//! Single-flight: concurrent identical misses share one upstream call.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use tokio::sync::Notify;
use tollgate_core::{LlmError, LlmResponse};

use crate::CacheKey;

/// How a shared call ended.
#[derive(Clone)]
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

/// The calls in flight, by key.
#[derive(Default)]
pub(crate) struct Flights {
    flights: Mutex<HashMap<CacheKey, Arc<Flight>>>,
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
    pub(crate) fn land(mut self, landing: Landing) {
        self.finish(landing);
    }

    fn finish(&mut self, landing: Landing) {
        self.landed = true;
        self.flights.lock().remove(&self.key);
        let _ = self.flight.landing.set(landing);
        self.flight.landed.notify_waiters();
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if !self.landed {
            self.finish(Landing::Abandoned);
        }
    }
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Flight>>> {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

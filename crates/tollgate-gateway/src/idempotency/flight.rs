//! Calls under way in this process, by key: the first with a key leads, and the rest wait for
//! its answer.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use tokio::sync::Notify;

use super::record::{Digest, Record};

/// One key's call under way.
pub(super) struct Flight {
    /// What the leading call asked: a duplicate that asks something else is refused at once.
    pub(super) fingerprint: Digest,
    /// Its answer, once kept; `None` when it was not (a failure): the waiters then try again.
    landing: OnceLock<Option<Arc<Record>>>,
    landed: Notify,
}

impl Flight {
    /// The leader's answer, once it has one.
    pub(super) async fn wait(&self) -> Option<Arc<Record>> {
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

/// Every key's call under way.
#[derive(Default)]
pub(super) struct Flights {
    flights: Mutex<HashMap<Digest, Arc<Flight>>>,
}

/// Leading a key's call, or following the one under way.
pub(super) enum Joined {
    Leader(Guard),
    Follower(Arc<Flight>),
}

/// A leader's duty: land its flight once, with its answer or without (when dropped).
pub(super) struct Guard {
    flights: Arc<Flights>,
    key: Digest,
    flight: Arc<Flight>,
}

impl Guard {
    /// Ends the flight: the waiters get `answer`, or try again without one. Whatever a later
    /// call should find must be in the store before this.
    pub(super) fn land(self, answer: Option<Arc<Record>>) {
        self.finish(answer);
    }

    fn finish(&self, answer: Option<Arc<Record>>) {
        self.flights.lock().remove(&self.key);
        if self.flight.landing.set(answer).is_ok() {
            self.flight.landed.notify_waiters();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Landed already, this finds the flight set and the map without it.
        if self.flight.landing.get().is_none() {
            self.finish(None);
        }
    }
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Arc<Flight>>> {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leads `key`'s call for `fingerprint`, or follows the one under way.
    pub(super) fn join(self: &Arc<Self>, key: Digest, fingerprint: Digest) -> Joined {
        let mut flights = self.lock();
        if let Some(flight) = flights.get(&key) {
            return Joined::Follower(flight.clone());
        }
        let flight = Arc::new(Flight {
            fingerprint,
            landing: OnceLock::new(),
            landed: Notify::new(),
        });
        flights.insert(key, flight.clone());
        Joined::Leader(Guard {
            flights: self.clone(),
            key,
            flight,
        })
    }
}

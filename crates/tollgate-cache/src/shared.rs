//! What every clone of a cache layer, its services and their futures share, and the steps one
//! call goes through: begin, look up, lead or follow, settle, store.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tollgate_core::{CacheControl, LlmError, LlmRequest, LlmResponse, stream::LlmStream};

use crate::{
    CacheConfig, CacheKey, CachedResponse, WallClock,
    flight::{Flight, Flights, Landing, Lead, Role},
    key::cache_key,
    status::{CacheStatus, mark},
    store::{CacheStore, Lookup, StoreFuture},
    telemetry::Telemetry,
};

/// The store, the rules, the calls in flight and the counts.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) config: CacheConfig,
    pub(crate) clock: WallClock,
    pub(crate) flights: Arc<Flights>,
    pub(crate) hits: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) bypassed: AtomicU64,
    pub(crate) stores: AtomicU64,
    pub(crate) telemetry: Telemetry,
}

/// What one cacheable call carries from its lookup to its settlement.
#[derive(Clone, Copy)]
pub(crate) struct Call {
    pub(crate) key: CacheKey,
    pub(crate) ttl: Duration,
    pub(crate) control: CacheControl,
    pub(crate) stream: bool,
    /// Flights landed before the lookup: a new leader looks again only if one landed since.
    landings: u64,
}

impl Call {
    /// Whether this call may share an upstream call with identical ones: not when it must not
    /// read the cache, and not for a stream, since each streaming caller gets its own.
    fn coalesces(&self) -> bool {
        !self.control.no_cache && !self.stream
    }
}

/// What the store said.
// One per call on its way to the caller: boxing the answer would add an allocation to every
// hit for no memory saved.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Looked {
    /// A fresh answer, marked as a hit.
    Hit(LlmResponse),
    /// Nothing there (or not looked, for `no-cache`).
    Miss,
    /// The store answers later.
    Pending(StoreFuture<Option<Arc<CachedResponse>>>),
}

/// Who makes the upstream call.
// One per call on its way to the caller: boxing the answer would add an allocation to every
// hit for no memory saved.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Turn {
    /// This call, alone: it does not coalesce.
    Alone,
    /// This call, for itself and every identical call that joins meanwhile.
    Lead(Lead),
    /// Another flight landed since the lookup: its stored answer, as a hit.
    Landed(LlmResponse),
    /// An identical call in flight: wait for it.
    Follow(Arc<Flight>),
}

impl Shared {
    /// The call `request` makes of the cache, or `None` when the rules leave it alone.
    pub(crate) fn begin(&self, request: &LlmRequest) -> Option<Call> {
        let Some(ttl) = self.config.ttl_for(request) else {
            self.bypassed.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        Some(Call {
            key: cache_key(request, self.config.scope, self.config.normalize_whitespace),
            ttl,
            control: request.meta.cache,
            stream: request.meta.stream,
            landings: self.flights.landings(),
        })
    }

    /// Step 1: the store's answer for `call`.
    pub(crate) fn look_up(&self, call: &Call) -> Looked {
        if call.control.no_cache {
            return Looked::Miss;
        }
        match self.store.get(call.key) {
            Lookup::Ready(Some(entry)) => match self.fresh(call, entry) {
                Some(hit) => Looked::Hit(hit),
                None => {
                    drop(self.store.remove(call.key));
                    Looked::Miss
                }
            },
            Lookup::Ready(None) => Looked::Miss,
            Lookup::Pending(lookup) => Looked::Pending(lookup),
        }
    }

    /// A stored entry as a hit, counted, unless its time is up. The entry's answer is moved into
    /// the response when nothing else holds it (a store that reads entries back, as the memory
    /// and file stores do, hands each lookup its own), and copied otherwise.
    pub(crate) fn fresh(&self, call: &Call, entry: Arc<CachedResponse>) -> Option<LlmResponse> {
        let now = self.clock.now_ms();
        if entry.is_expired(now) {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.telemetry.hits.increment(1);
        let age = Duration::from_millis(now.saturating_sub(entry.stored_at_ms));
        let answer = Arc::try_unwrap(entry)
            .map_or_else(|shared| shared.to_response(), CachedResponse::into_response);
        Some(hit(answer, age, call.stream))
    }

    /// Step 2: whether `call` goes upstream itself, or follows an identical call in flight
    /// (`following`, when it already knows which).
    pub(crate) fn lead_or_follow(&self, call: &Call, following: Option<Arc<Flight>>) -> Turn {
        if !call.coalesces() {
            return Turn::Alone;
        }
        let role = match following {
            Some(flight) => Role::Follower(flight),
            None => self.flights.join(call.key),
        };
        match role {
            Role::Leader(lead) => self.lead_unless_landed(lead, call),
            Role::Follower(flight) => Turn::Follow(flight),
        }
    }

    /// A new leader's last look before it calls upstream: if a flight landed since this call's
    /// lookup, its stored answer is served as a hit and the lead lands with it.
    fn lead_unless_landed(&self, lead: Lead, call: &Call) -> Turn {
        // Nothing landed since the lookup: it would miss again, so it is not made.
        if self.flights.landings() == call.landings {
            return Turn::Lead(lead);
        }
        // Looked again only where that is free. A streaming call never leads, so a hit here is
        // a plain response.
        let Lookup::Ready(Some(entry)) = self.store.get(call.key) else {
            return Turn::Lead(lead);
        };
        match self.fresh(call, entry) {
            Some(hit) => {
                // Followers mark it as theirs, over the hit's marks.
                lead.land(|| Landing::Answer(hit.clone()));
                Turn::Landed(hit)
            }
            None => Turn::Lead(lead),
        }
    }

    /// A follower's answer: the leader's, shared; `None` when the leader's caller went away and
    /// this call must take its place.
    pub(crate) async fn follow(&self, flight: &Flight) -> Option<Result<LlmResponse, LlmError>> {
        match flight.wait().await {
            Landing::Answer(response) => {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
                self.telemetry.coalesced.increment(1);
                Some(Ok(mark(response, CacheStatus::Coalesced)))
            }
            Landing::Error(error) => Some(Err(error)),
            Landing::Abandoned => None,
        }
    }

    /// Step 3: what an upstream call's result becomes: stored when it may be, shared with the
    /// followers, marked as a miss.
    pub(crate) async fn settle(
        self: Arc<Self>,
        call: Call,
        lead: Option<Lead>,
        result: Result<LlmResponse, LlmError>,
    ) -> Result<LlmResponse, LlmError> {
        match result {
            Ok(mut response) if response.is_stream() => {
                let keeper = self.clone();
                response.on_stream_complete(move |answer| {
                    let answer = answer.clone();
                    // Stored off the caller's path; without a runtime, not at all.
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        runtime.spawn(async move { keeper.store(&call, &answer).await });
                    }
                });
                Ok(mark(response, CacheStatus::Miss))
            }
            Ok(response) => {
                self.store(&call, &response).await;
                if let Some(lead) = lead {
                    lead.land(|| Landing::Answer(response.clone()));
                }
                Ok(mark(response, CacheStatus::Miss))
            }
            Err(error) => {
                if let Some(lead) = lead {
                    lead.land(|| Landing::Error(error.clone()));
                }
                Err(error)
            }
        }
    }

    /// Step 4: stores a fresh answer when the policy allows it.
    async fn store(&self, call: &Call, response: &LlmResponse) {
        if call.control.no_store || response.text_len() > self.config.max_entry_bytes {
            return;
        }
        let ttl_ms = u64::try_from(call.ttl.as_millis()).unwrap_or(u64::MAX);
        self.store
            .put_response(call.key, response, self.clock.now_ms(), ttl_ms)
            .await;
        let stored = self.stores.fetch_add(1, Ordering::Relaxed) + 1;
        self.telemetry.stores.increment(1);
        // A store's size settles its pending work first (moka's batches): read it after the
        // first store and every 64th, not on every miss.
        if cfg!(feature = "metrics") && (stored == 1 || stored.is_multiple_of(64)) {
            self.telemetry.store_holds(self.store.stats());
        }
    }
}

/// A stored answer served as a hit: replayed as one event to a streaming caller.
fn hit(answer: LlmResponse, age: Duration, stream: bool) -> LlmResponse {
    let response = mark(answer, CacheStatus::Hit { age });
    if stream {
        let replay = LlmStream::replay(&response);
        return response.with_stream(replay);
    }
    response
}

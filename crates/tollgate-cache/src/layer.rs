//! `CacheLayer` and its service: answer from the store, or call once and store.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::HeaderValue;
use pin_project_lite::pin_project;
use tollgate_core::{
    CacheControl, ConfigError, LlmError, LlmRequest, LlmResponse, future::call_when_ready,
    stream::LlmStream,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    CacheConfig, CacheKey, CachedResponse, WallClock,
    flight::{Flights, Landing, Lead, Role},
    key::cache_key,
    store::{CacheStore, Lookup, StoreStats},
};

/// The header a response carries to say where it came from: `HIT` or `MISS`.
pub const X_CACHE: http::HeaderName = http::HeaderName::from_static("x-cache");

/// How the cache served a response, in its extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the store; `age` is how long ago it was stored.
    Hit {
        /// Time since the answer was stored.
        age: Duration,
    },
    /// Answered by the same upstream call as an identical request that was already in flight.
    Coalesced,
    /// Called upstream (and stored, if it could be).
    Miss,
}

/// What a cache did since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheMetrics {
    /// Answers served from the store.
    pub hits: u64,
    /// Answers shared from an identical call in flight.
    pub coalesced: u64,
    /// Cacheable requests that had to call upstream.
    pub misses: u64,
    /// Requests the policy left alone (not cacheable).
    pub bypassed: u64,
    /// Answers written to the store.
    pub stores: u64,
    /// Entries the store dropped to stay under its size bound.
    pub evictions: u64,
    /// Entries the store dropped when their time was up.
    pub expirations: u64,
    /// Bytes held by the store.
    pub bytes: u64,
    /// Entries held by the store.
    pub entries: u64,
    /// Distinct requests calling upstream now, each with any identical ones waiting on it: an
    /// entry lives in the single-flight table only while its call is under way.
    pub in_flight: u64,
    /// `(hits + coalesced) / (hits + coalesced + misses)`, 0 before any lookup.
    pub hit_rate: f64,
}

/// Caches answers in a [`CacheStore`]: see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn CacheStore>,
    config: CacheConfig,
    clock: WallClock,
    flights: Arc<Flights>,
    hits: AtomicU64,
    coalesced: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    stores: AtomicU64,
}

impl fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("config", &self.shared.config)
            .field("metrics", &self.metrics())
            .finish_non_exhaustive()
    }
}

impl CacheLayer {
    /// A cache over `store` under `config`, reading the system's wall clock.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field of `config` out of range.
    pub fn new(store: impl CacheStore, config: CacheConfig) -> Result<Self, ConfigError> {
        Self::with_clock(store, config, WallClock::system())
    }

    /// A cache reading time from `clock` (tests on paused time pass a clock on tokio's).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field of `config` out of range.
    pub fn with_clock(
        store: impl CacheStore,
        config: CacheConfig,
        clock: WallClock,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                store: Arc::new(store),
                config,
                clock,
                flights: Arc::new(Flights::default()),
                hits: AtomicU64::new(0),
                coalesced: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                bypassed: AtomicU64::new(0),
                stores: AtomicU64::new(0),
            }),
        })
    }

    /// The key `request` is cached under.
    pub fn key_of(&self, request: &LlmRequest) -> CacheKey {
        let config = &self.shared.config;
        cache_key(request, config.scope, config.normalize_whitespace)
    }

    /// Removes the answer cached for `request`.
    pub async fn invalidate(&self, request: &LlmRequest) {
        self.invalidate_key(self.key_of(request)).await;
    }

    /// Removes the answer cached under `key`.
    pub async fn invalidate_key(&self, key: CacheKey) {
        self.shared.store.remove(key).await;
    }

    /// Removes every cached answer.
    pub async fn clear(&self) {
        self.shared.store.clear().await;
    }

    /// Counts so far, with the store's own.
    pub fn metrics(&self) -> CacheMetrics {
        let shared = &self.shared;
        let StoreStats {
            entries,
            bytes,
            evictions,
            expirations,
            ..
        } = shared.store.stats();
        let hits = shared.hits.load(Ordering::Relaxed);
        let coalesced = shared.coalesced.load(Ordering::Relaxed);
        let misses = shared.misses.load(Ordering::Relaxed);
        let looked = hits + coalesced + misses;
        CacheMetrics {
            hits,
            coalesced,
            misses,
            bypassed: shared.bypassed.load(Ordering::Relaxed),
            stores: shared.stores.load(Ordering::Relaxed),
            evictions,
            expirations,
            bytes,
            entries,
            in_flight: shared.flights.len() as u64,
            hit_rate: if looked == 0 {
                0.0
            } else {
                (hits + coalesced) as f64 / looked as f64
            },
        }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = Cache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache {
            inner,
            layer: self.clone(),
        }
    }
}

/// Caches calls to `S`; built by [`CacheLayer`].
#[derive(Clone, Debug)]
pub struct Cache<S> {
    inner: S,
    layer: CacheLayer,
}

impl<S> Cache<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, layer: CacheLayer) -> Self {
        Self { inner, layer }
    }

    tollgate_core::define_inner_service_accessors!();
}

fn mark(mut response: LlmResponse, status: CacheStatus) -> LlmResponse {
    let value = match status {
        CacheStatus::Miss => "MISS",
        CacheStatus::Hit { .. } | CacheStatus::Coalesced => "HIT",
    };
    response
        .headers
        .insert(X_CACHE, HeaderValue::from_static(value));
    response.extensions.insert(status);
    response
}

fn hit(entry: &CachedResponse, now_ms: u64, stream: bool) -> LlmResponse {
    let age = Duration::from_millis(now_ms.saturating_sub(entry.stored_at_ms));
    let response = mark(entry.to_response(), CacheStatus::Hit { age });
    if stream {
        // A streaming caller reads events: replay the stored answer as one.
        let replay = LlmStream::replay(&response);
        return response.with_stream(replay);
    }
    response
}

/// What a new leader does after its last look in the store.
enum Leading {
    /// Calls upstream.
    Call(Lead),
    /// Serves the answer another flight stored meanwhile.
    Landed(LlmResponse),
}

impl Shared {
    /// A new leader's last look before it calls upstream: if a flight landed since this call's
    /// lookup (`landings` was read before it), its stored answer is served as a hit and the lead
    /// lands with it.
    fn lead_unless_landed(&self, lead: Lead, landings: u64, key: CacheKey) -> Leading {
        // Nothing landed since the lookup: it would miss again, so it is not made.
        if self.flights.landings() == landings {
            return Leading::Call(lead);
        }
        // Looked again only where that is free. A streaming call never leads, so a hit here is
        // a plain response.
        let Lookup::Ready(Some(entry)) = self.store.get(key) else {
            return Leading::Call(lead);
        };
        let now = self.clock.now_ms();
        if entry.is_expired(now) {
            return Leading::Call(lead);
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        lead.land(|| Landing::Answer(entry.to_response()));
        Leading::Landed(hit(&entry, now, false))
    }

    /// What an upstream call's result becomes: stored when it may be, shared with the followers,
    /// marked as a miss.
    async fn settle(
        self: Arc<Self>,
        key: CacheKey,
        ttl: Duration,
        control: CacheControl,
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
                        runtime.spawn(async move {
                            keeper.keep(key, &answer, ttl, control.no_store).await;
                        });
                    }
                });
                Ok(mark(response, CacheStatus::Miss))
            }
            Ok(response) => {
                self.keep(key, &response, ttl, control.no_store).await;
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

    /// Stores a fresh answer when the policy allows it.
    async fn keep(&self, key: CacheKey, response: &LlmResponse, ttl: Duration, no_store: bool) {
        if no_store || response.content.len() > self.config.max_entry_bytes {
            return;
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let entry = CachedResponse::from_response(response, self.clock.now_ms(), ttl_ms);
        self.store.put(key, Arc::new(entry)).await;
        self.stores.fetch_add(1, Ordering::Relaxed);
    }
}

impl<S> Service<LlmRequest> for Cache<S>
where
    S: Service<LlmRequest, Response = LlmResponse> + Clone + Send + 'static,
    S::Error: Into<LlmError>,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let shared = &self.layer.shared;
        let Some(ttl) = shared.config.ttl_for(&request) else {
            shared.bypassed.fetch_add(1, Ordering::Relaxed);
            return ResponseFuture::bypass(self.inner.call(request));
        };
        let key = cache_key(
            &request,
            shared.config.scope,
            shared.config.normalize_whitespace,
        );
        let control = request.meta.cache;
        let stream = request.meta.stream;
        let landings = shared.flights.landings();
        let mut pending = None;
        if !control.no_cache {
            match shared.store.get(key) {
                Lookup::Ready(Some(entry)) => {
                    let now = shared.clock.now_ms();
                    if !entry.is_expired(now) {
                        shared.hits.fetch_add(1, Ordering::Relaxed);
                        return ResponseFuture::ready(Ok(hit(&entry, now, stream)));
                    }
                    drop(shared.store.remove(key));
                }
                Lookup::Ready(None) => {}
                Lookup::Pending(lookup) => pending = Some(lookup),
            }
        }
        let mut following = None;
        if pending.is_none() {
            // The store answered at once, so whether this call leads, follows or stands alone is
            // known now: a leader (or a call that never coalesces) goes upstream through the
            // service its caller readied, with no clone of it and no second readiness check.
            // Each streaming caller gets its own stream, so streams never coalesce.
            let lead = if control.no_cache || stream {
                None
            } else {
                match shared.flights.join(key) {
                    Role::Leader(lead) => match shared.lead_unless_landed(lead, landings, key) {
                        Leading::Call(lead) => Some(lead),
                        Leading::Landed(hit) => return ResponseFuture::ready(Ok(hit)),
                    },
                    // Waiting, and calling in the leader's place if it goes away, happens below.
                    Role::Follower(flight) => {
                        following = Some(flight);
                        None
                    }
                }
            };
            if following.is_none() {
                shared.misses.fetch_add(1, Ordering::Relaxed);
                let future = self.inner.call(request);
                let shared = shared.clone();
                return ResponseFuture::boxed(Box::pin(async move {
                    let result = future.await.map_err(Into::into);
                    shared.settle(key, ttl, control, lead, result).await
                }));
            }
        }
        // A lookup still to finish, or a follower: the ready inner service goes with the call,
        // this one keeps a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = shared.clone();
        ResponseFuture::boxed(Box::pin(async move {
            if let Some(lookup) = pending {
                if let Some(entry) = lookup.await {
                    let now = shared.clock.now_ms();
                    if !entry.is_expired(now) {
                        shared.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(hit(&entry, now, stream));
                    }
                    shared.store.remove(key).await;
                }
            }
            let mut request = Some(request);
            loop {
                // Each streaming caller gets its own stream, so streams never coalesce.
                let lead = if control.no_cache || stream {
                    None
                } else {
                    let role = match following.take() {
                        Some(flight) => Role::Follower(flight),
                        None => shared.flights.join(key),
                    };
                    match role {
                        Role::Leader(lead) => {
                            match shared.lead_unless_landed(lead, landings, key) {
                                Leading::Call(lead) => Some(lead),
                                Leading::Landed(hit) => return Ok(hit),
                            }
                        }
                        Role::Follower(flight) => match flight.wait().await {
                            Landing::Answer(response) => {
                                shared.coalesced.fetch_add(1, Ordering::Relaxed);
                                return Ok(mark(response, CacheStatus::Coalesced));
                            }
                            Landing::Error(error) => return Err(error),
                            // The leader's caller went away: take its place.
                            Landing::Abandoned => continue,
                        },
                    }
                };
                shared.misses.fetch_add(1, Ordering::Relaxed);
                let request = request.take().expect("only one upstream call is made");
                let result = call_when_ready(&mut inner, request).await;
                return shared.settle(key, ttl, control, lead, result).await;
            }
        }))
    }
}

type Boxed = Pin<Box<dyn Future<Output = Result<LlmResponse, LlmError>> + Send>>;

pin_project! {
    /// The future [`Cache`] returns.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Ready { result: Option<Result<LlmResponse, LlmError>> },
        Bypass { #[pin] future: F },
        Boxed { future: Boxed },
    }
}

impl<F> ResponseFuture<F> {
    fn ready(result: Result<LlmResponse, LlmError>) -> Self {
        Self {
            state: State::Ready {
                result: Some(result),
            },
        }
    }

    fn bypass(future: F) -> Self {
        Self {
            state: State::Bypass { future },
        }
    }

    fn boxed(future: Boxed) -> Self {
        Self {
            state: State::Boxed { future },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<LlmResponse, E>>,
    E: Into<LlmError>,
{
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Ready { result } => {
                Poll::Ready(result.take().expect("polled after completion"))
            }
            StateProj::Bypass { future } => future.poll(cx).map_err(Into::into),
            StateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

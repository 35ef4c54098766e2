//! Idempotency keys: a call that carries an `Idempotency-Key` header (as Stripe's clients send,
//! and OpenAI's take as an option) is answered once, and its retries get that answer again.
//!
//! A successful answer (status 2xx, and for a stream, one that came to its proper end) is kept
//! under the caller's key (its principal: a file key's name, a record key's id) and the
//! `Idempotency-Key`, with a digest of the route and body it answered, for `idempotency.ttl`
//! (default 24 h). Then, for the same key:
//!
//! - the same route and body get the kept answer, byte for byte (status, body, content type and
//!   the gateway's headers on it, a stream's every event), with `x-tollgate-idempotent-replay:
//!   true` and `x-tollgate-original-request-id`; it never reaches the stack, so it costs no quota
//!   and is billed nothing;
//! - a call while the first is under way waits for its answer (up to its own timeout, then 409
//!   `idempotency_key_in_use`);
//! - another body or route is a 422 of type `idempotency_error`, code `idempotency_key_reused`
//!   (Anthropic's error shape on `/v1/messages`);
//! - a failure (any other status, a stream that failed, was cut or was left by its caller) is not
//!   kept, so the next call with the key runs again, as does one after the TTL.
//!
//! A keyed call runs to its end on a task of its own, whether or not its caller stays: a client
//! that timed out and retries finds the first call's answer kept (or waits for it), instead of
//! starting a second call the provider bills again.
//!
//! A key is 1 to 255 visible ASCII characters, one header; anything else is a 400.
//!
//! Answers are kept in this process's memory (moka, bounded by `max_bytes`, least recently used
//! out first: an answer is most likely retried soon after it was given), and with a `redis`
//! section in Redis too, shared by every process on it (each operation given the section's
//! `cache_timeout`, and at least a second). There a call under way marks its key (one
//! script: `SET` only when nothing is held) for the length of its timeout, so a duplicate in
//! another process waits for it too, polling until the answer is there. A Redis that does not
//! answer leaves each process to itself: its own duplicates still wait for each other, and its own
//! retries find its answers in its memory. Keys are kept as a SHA-256 digest of the principal and
//! the key, never logged; what is kept is the answer the caller got, which holds no secret of the
//! gateway's.

mod body;
mod config;
mod detach;
mod flight;
mod record;
mod store;

use std::{sync::Arc, time::Duration};

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use sha2::{Digest as _, Sha256};
use tollgate::{ConfigError, redis::RedisConfig};

pub(crate) use config::check;
pub use config::{IdempotencyConfig, IdempotencyStore};
pub(crate) use detach::run_to_end;
use flight::{Flights, Guard, Joined};
use record::{Digest, Record};
use store::{Claim, Memory, Redis, Store};

use crate::error::ApiError;

/// The header a caller names a call by.
pub(crate) const HEADER: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest key (Stripe's bound).
const MAX_KEY: usize = 255;

/// The least time a Redis operation of this module is given (the `redis` section's
/// `cache_timeout` when longer): a kept answer is worth the wait, since one not written is a
/// retry run, and billed, again.
const MIN_REDIS_WAIT: Duration = Duration::from_secs(1);

/// How much longer than its call's own bound a call's mark in Redis lasts: a process that died
/// mid-call holds its key no longer than this past the call's timeout.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// A gateway's kept answers and calls under way. Kept across reloads that do not change its
/// store.
pub(crate) struct Idempotency {
    store: Store,
    flights: Arc<Flights>,
    /// What the store was built from.
    basis: (IdempotencyStore, u64, Option<RedisConfig>),
}

/// A call with an `Idempotency-Key`, as [`Idempotency::begin`] reads it.
pub(crate) struct Call<'a> {
    /// Whose key it is: the caller's principal.
    pub(crate) principal: &'a str,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) route: &'a str,
    pub(crate) body: &'a Bytes,
    pub(crate) settings: &'a IdempotencyConfig,
    /// How long it may wait for a call under way with its key.
    pub(crate) wait: Duration,
}

/// A call that ends before the stack: its key's answer again, or a refusal.
pub(crate) enum Early {
    Replay(Response),
    Refused(ApiError),
}

impl Idempotency {
    /// What the `idempotency` section asks for (`None` when it is off), with the configuration's
    /// `redis` section; `previous`, the one serving until now, is kept when its store is the one
    /// asked for, with its answers and calls.
    ///
    /// # Errors
    ///
    /// A Redis that cannot be named.
    pub(crate) fn build(
        settings: Option<&IdempotencyConfig>,
        section: Option<&RedisConfig>,
        previous: Option<&Arc<Self>>,
    ) -> Result<Option<Arc<Self>>, ConfigError> {
        let Some(settings) = settings else {
            return Ok(None);
        };
        let kind = settings.store_for(section.is_some());
        let redis = section.filter(|_| kind == IdempotencyStore::Redis);
        let basis = (kind, settings.max_bytes, redis.cloned());
        if let Some(previous) = previous.filter(|previous| previous.basis == basis) {
            return Ok(Some(previous.clone()));
        }
        let shared = match redis {
            None => None,
            Some(section) => {
                let connection = section.connect(|name| std::env::var(name).ok())?;
                Some(Redis::new(
                    connection,
                    &section.prefix,
                    section.cache_timeout.max(MIN_REDIS_WAIT),
                ))
            }
        };
        let store = Store::new(Memory::new(settings.max_bytes), shared);
        Ok(Some(Arc::new(Self {
            store,
            flights: Arc::default(),
            basis,
        })))
    }

    /// Where `call` stands: its key's kept answer again, a refusal, or the lead of the call that
    /// answers for its key, which [`Lead::watch`] ends.
    pub(crate) async fn begin(self: &Arc<Self>, call: Call<'_>) -> Result<Lead, Early> {
        let named = read_key(call.headers).map_err(Early::Refused)?;
        let key = digest(&[b"tollgate-idempotency/1", call.principal.as_bytes(), named]);
        let fingerprint = digest(&[call.route.as_bytes(), call.body]);
        let deadline = tokio::time::Instant::now() + call.wait;
        loop {
            if let Some(record) = self.store.peek(&key) {
                return Err(answer(&record, &fingerprint));
            }
            let guard = match self.flights.join(key, fingerprint) {
                Joined::Leader(guard) => guard,
                Joined::Follower(flight) => {
                    if flight.fingerprint != fingerprint {
                        return Err(Early::Refused(reused()));
                    }
                    waiting();
                    match tokio::time::timeout_at(deadline, flight.wait()).await {
                        Ok(Some(record)) => return Err(answer(&record, &fingerprint)),
                        // The first call kept nothing: this one runs, or waits for the next.
                        Ok(None) => continue,
                        Err(_) => return Err(Early::Refused(in_use())),
                    }
                }
            };
            let lease = call.wait + LEASE_MARGIN;
            return match self.store.claim(&key, &fingerprint, lease, deadline).await {
                Claim::Won(token) => Ok(Lead {
                    idempotency: self.clone(),
                    guard: Some(guard),
                    key,
                    fingerprint,
                    token,
                    ttl: call.settings.ttl,
                    max_entry_bytes: call.settings.max_entry_bytes,
                }),
                Claim::Found(record) => {
                    let early = answer(&record, &fingerprint);
                    guard.land(Some(record));
                    Err(early)
                }
                Claim::Busy(theirs) if theirs == fingerprint => Err(Early::Refused(in_use())),
                Claim::Busy(_) => Err(Early::Refused(reused())),
            };
        }
    }
}

/// The call that answers for its key: its answer is kept for the key's retries once it has gone
/// whole to its caller. Dropped without, it lets the next call with the key run.
pub(crate) struct Lead {
    idempotency: Arc<Idempotency>,
    /// Taken when the answer is kept.
    guard: Option<Guard>,
    key: Digest,
    fingerprint: Digest,
    /// Its mark in Redis.
    token: Option<[u8; 16]>,
    ttl: Duration,
    max_entry_bytes: usize,
}

impl Lead {
    /// `response` on its way to the caller, kept for the key once its body has gone whole, when
    /// it is a success.
    pub(crate) fn watch(self, response: Response) -> Response {
        body::watch(self, response)
    }

    fn keep(mut self, status: StatusCode, headers: HeaderMap, body: Bytes) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let record = Arc::new(Record {
            fingerprint: self.fingerprint,
            status,
            headers,
            body,
        });
        // Stored before the flight lands, so a call that no longer finds the flight finds this.
        let store = &self.idempotency.store;
        store.put(self.key, record.clone(), self.ttl, self.token);
        metrics::counter!("tollgate_idempotency_kept_total").increment(1);
        guard.land(Some(record));
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            let store = &self.idempotency.store;
            store.release(self.key, &self.fingerprint, self.token);
            // The waiters try again: one of them runs.
            guard.land(None);
        }
    }
}

/// The caller's key: one header of 1 to 255 visible ASCII characters.
fn read_key(headers: &HeaderMap) -> Result<&[u8], ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let value = values.next().map(http::HeaderValue::as_bytes);
    let refused = |why: &str| {
        ApiError::invalid(format!("the Idempotency-Key header {why}"))
            .with_param("Idempotency-Key")
            .with_code("invalid_idempotency_key")
    };
    if values.next().is_some() {
        return Err(refused("must be sent once"));
    }
    match value {
        Some(key)
            if !key.is_empty() && key.len() <= MAX_KEY && key.iter().all(u8::is_ascii_graphic) =>
        {
            Ok(key)
        }
        _ => Err(refused(
            "must be 1 to 255 visible ASCII characters (letters, digits, punctuation)",
        )),
    }
}

/// SHA-256 over `parts`, each after its length, so no two lists of parts hash alike.
fn digest(parts: &[&[u8]]) -> Digest {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// `record` again for a call asking `fingerprint`, or a refusal if it asks something else.
fn answer(record: &Record, fingerprint: &Digest) -> Early {
    if &record.fingerprint != fingerprint {
        return Early::Refused(reused());
    }
    metrics::counter!("tollgate_idempotency_replays_total").increment(1);
    Early::Replay(record.replay())
}

/// A duplicate began waiting for a call under way (in this process or another).
fn waiting() {
    metrics::counter!("tollgate_idempotency_waits_total").increment(1);
}

fn reused() -> ApiError {
    metrics::counter!("tollgate_idempotency_conflicts_total", "reason" => "reused").increment(1);
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_error",
        "this Idempotency-Key was used for a different request (another body or endpoint): a new \
         request needs a new key",
    )
    .with_code("idempotency_key_reused")
}

fn in_use() -> ApiError {
    metrics::counter!("tollgate_idempotency_conflicts_total", "reason" => "in_use").increment(1);
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_error",
        "a request with this Idempotency-Key is still under way: retry once it has finished",
    )
    .with_code("idempotency_key_in_use")
}

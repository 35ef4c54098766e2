//! Where answers are kept: this process's memory (moka, bounded in bytes), or Redis, shared by
//! every process, where a call under way is marked too.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::{notification::RemovalCause, policy::EvictionPolicy, sync::Cache};
use tollgate::redis::RedisConnection;

use super::record::{self, Digest, Held, Record};

/// Bytes a memory entry costs beyond its record's weight: moka's per-entry cost, as the cache
/// measured it for its own entries, and the `Arc`'s counts the record sits behind.
const ENTRY_OVERHEAD: usize =
    tollgate::cache::store::MEMORY_ENTRY_OVERHEAD + 2 * std::mem::size_of::<usize>();

/// The store of a gateway's idempotent answers: this process's memory, and with Redis, Redis
/// behind it. An answer given here is kept in both, so this process replays it without a round
/// trip, and while Redis is away.
pub(super) struct Store {
    memory: Memory,
    redis: Option<Redis>,
}

/// What a call found when it came to lead its key.
pub(super) enum Claim {
    /// Nothing: the call runs, with the token of its mark in Redis (when there is a Redis; the
    /// mark may not have been set, if Redis did not answer).
    Won(Option<[u8; 16]>),
    /// An answer kept for the key.
    Found(Arc<Record>),
    /// Another call with the key is under way in another process, for this fingerprint, and did
    /// not finish within the wait.
    Busy(Digest),
}

impl Store {
    pub(super) fn new(memory: Memory, redis: Option<Redis>) -> Self {
        Self { memory, redis }
    }

    /// The answer kept under `key` in this process.
    pub(super) fn peek(&self, key: &Digest) -> Option<Arc<Record>> {
        self.memory.cache.get(key).map(|(record, _)| record)
    }

    /// Takes `key` for a call asking `fingerprint`, unless an answer is kept under it or another
    /// process's call holds it; waits for that one until `deadline`, and marks the key for as long
    /// as `lease` when it takes it.
    pub(super) async fn claim(
        &self,
        key: &Digest,
        fingerprint: &Digest,
        lease: Duration,
        deadline: tokio::time::Instant,
    ) -> Claim {
        if let Some(record) = self.peek(key) {
            return Claim::Found(record);
        }
        match &self.redis {
            None => Claim::Won(None),
            Some(redis) => redis.claim(key, fingerprint, lease, deadline).await,
        }
    }

    /// Keeps `record` under `key` for `ttl`: in memory at once, in Redis on a task of its own
    /// (over the mark of call `token`, or where no other call holds the key).
    pub(super) fn put(
        &self,
        key: Digest,
        record: Arc<Record>,
        ttl: Duration,
        token: Option<[u8; 16]>,
    ) {
        self.memory.cache.insert(key, (record.clone(), ttl));
        if let Some(redis) = &self.redis {
            let redis = redis.clone();
            spawn(async move { redis.put(&key, &record, ttl, token).await });
        }
    }

    /// Lifts the mark of call `token` for `fingerprint` from `key` (on a task of its own): its
    /// call kept nothing.
    pub(super) fn release(&self, key: Digest, fingerprint: &Digest, token: Option<[u8; 16]>) {
        if let (Some(redis), Some(token)) = (&self.redis, token) {
            let redis = redis.clone();
            let mark = record::encode_pending(fingerprint, &token);
            spawn(async move { redis.release(&key, &mark).await });
        }
    }
}

fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    // A call's end runs on the runtime that serves it; without one there is nobody to tell.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// Answers in this process: moka, weighed in bytes, each answer leaving at its own time.
pub(super) struct Memory {
    cache: Cache<Digest, (Arc<Record>, Duration)>,
}

struct TimeToLive;

impl moka::Expiry<Digest, (Arc<Record>, Duration)> for TimeToLive {
    fn expire_after_create(
        &self,
        _: &Digest,
        (_, ttl): &(Arc<Record>, Duration),
        _: Instant,
    ) -> Option<Duration> {
        Some(*ttl)
    }

    /// A new answer under a key (its old one gone, or never read) has its own time.
    fn expire_after_update(
        &self,
        key: &Digest,
        value: &(Arc<Record>, Duration),
        at: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, at)
    }
}

impl Memory {
    /// A store holding at most `max_bytes`. Least recently used first out when full: an answer
    /// is most likely retried soon after it was given, which moka's default admission (by how
    /// often a key was seen before) would refuse to keep over older ones.
    pub(super) fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|_, (record, _): &(Arc<Record>, Duration)| {
                u32::try_from(record.weight().saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
            })
            .expire_after(TimeToLive)
            .eviction_listener(|_, _, cause| {
                if cause == RemovalCause::Size {
                    metrics::counter!("tollgate_idempotency_evictions_total").increment(1);
                }
            })
            .build();
        Self { cache }
    }
}

/// Answers and marks in Redis, under `<prefix>:idem:<key hex>`.
#[derive(Clone)]
pub(super) struct Redis {
    connection: RedisConnection,
    prefix: Arc<str>,
    timeout: Duration,
    /// Each script's SHA-1, by [`Lua`].
    shas: Arc<[String; 3]>,
}

/// The scripts, each one step on one key.
#[derive(Clone, Copy)]
enum Lua {
    /// Answers the value under `KEYS[1]`; with none, sets it to `ARGV[1]` for `ARGV[2]` ms and
    /// answers nil.
    Claim,
    /// Sets `KEYS[1]` to `ARGV[2]` for `ARGV[3]` ms unless it holds something other than
    /// `ARGV[1]` (another call's mark, or an answer kept already).
    Put,
    /// Deletes `KEYS[1]` if it holds `ARGV[1]`.
    Release,
}

impl Lua {
    const ALL: [Self; 3] = [Self::Claim, Self::Put, Self::Release];

    fn source(self) -> &'static str {
        match self {
            Self::Claim => {
                "local held = redis.call('GET', KEYS[1])
                 if held then return held end
                 redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                 return false"
            }
            Self::Put => {
                "local held = redis.call('GET', KEYS[1])
                 if held and held ~= ARGV[1] then return 0 end
                 redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
                 return 1"
            }
            Self::Release => {
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
                 return 0"
            }
        }
    }
}

fn millis(duration: Duration) -> String {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
        .to_string()
}

impl Redis {
    /// Keys under `<prefix>:idem`, every call bounded by `timeout`.
    pub(super) fn new(connection: RedisConnection, prefix: &str, timeout: Duration) -> Self {
        let sha = |lua: Lua| redis::Script::new(lua.source()).get_hash().to_owned();
        Self {
            connection,
            prefix: format!("{prefix}:idem").into(),
            timeout,
            shas: Arc::new(Lua::ALL.map(sha)),
        }
    }

    fn name(&self, key: &Digest) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 65);
        name.push_str(&self.prefix);
        name.push(':');
        for byte in key {
            name.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            name.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
        }
        name
    }

    async fn claim(
        &self,
        key: &Digest,
        fingerprint: &Digest,
        lease: Duration,
        deadline: tokio::time::Instant,
    ) -> Claim {
        let mut token = [0u8; 16];
        // Tokens need only differ between calls on one key; a fixed one will do without entropy.
        let _ = getrandom::fill(&mut token);
        let mark = record::encode_pending(fingerprint, &token);
        let name = self.name(key);
        let lease = millis(lease);
        let mut pause = Duration::from_millis(5);
        let mut waited = false;
        let mut replaced = false;
        loop {
            let held: Option<Vec<u8>> = match self
                .script(Lua::Claim, &name, &[&mark, lease.as_bytes()])
                .await
            {
                Ok(held) => held,
                // Each process on its own, as the limiter falls back: this one's calls still
                // wait for each other. The token stays: a script that timed out may have run,
                // and the mark it set is this call's to replace or lift.
                Err(error) => {
                    tracing::warn!(target: "tollgate::idempotency", %error, "Redis did not answer: the call runs without a shared mark");
                    return Claim::Won(Some(token));
                }
            };
            let Some(held) = held else {
                return Claim::Won(Some(token));
            };
            match record::decode(&held) {
                Ok(Held::Answer(record)) => return Claim::Found(Arc::new(record)),
                Ok(Held::Pending(theirs)) if &theirs != fingerprint => {
                    return Claim::Busy(theirs);
                }
                Ok(Held::Pending(theirs)) => {
                    if tokio::time::Instant::now() + pause > deadline {
                        return Claim::Busy(theirs);
                    }
                    if !std::mem::replace(&mut waited, true) {
                        super::waiting();
                    }
                    // Another process's call for the same request: its answer comes under the
                    // same key, or its mark goes and this call takes the key.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(reason) => {
                    // Not a value this module wrote: the key is taken over, once. If it cannot
                    // be (the DEL refused, or the value back at once), the call runs without a
                    // shared mark rather than spin.
                    tracing::warn!(target: "tollgate::idempotency", reason, "a corrupt value under an idempotency key; replaced");
                    let deleted: Result<i64, _> = self.query(redis::cmd("DEL").arg(&name)).await;
                    if deleted.is_err() || std::mem::replace(&mut replaced, true) {
                        return Claim::Won(Some(token));
                    }
                }
            }
        }
    }

    async fn put(&self, key: &Digest, record: &Record, ttl: Duration, token: Option<[u8; 16]>) {
        let Some(value) = record::encode(record) else {
            return;
        };
        let mark = token
            .map(|token| record::encode_pending(&record.fingerprint, &token))
            .unwrap_or_default();
        let ttl = millis(ttl);
        let written: Result<i64, _> = self
            .script(Lua::Put, &self.name(key), &[&mark, &value, ttl.as_bytes()])
            .await;
        if let Err(error) = written {
            metrics::counter!("tollgate_idempotency_not_kept_total", "reason" => "store")
                .increment(1);
            tracing::warn!(target: "tollgate::idempotency", %error, "an answer could not be kept in Redis: its retry runs again");
        }
    }

    async fn release(&self, key: &Digest, mark: &[u8]) {
        let released: Result<i64, _> = self.script(Lua::Release, &self.name(key), &[mark]).await;
        if let Err(error) = released {
            // The mark goes by itself at the end of its lease.
            tracing::warn!(target: "tollgate::idempotency", %error, "a call's mark could not be lifted from Redis");
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, Failure> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, command.query_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failure::Error(error)),
            Err(_) => Err(Failure::Timeout(self.timeout)),
        }
    }

    /// Runs `lua` on `name` with `args`, by its SHA, and by its source when the node has not seen
    /// it (`EVAL` caches it on the node that holds the key, where redis-rs's `SCRIPT LOAD` would
    /// go to every master of a cluster).
    async fn script<T: redis::FromRedisValue>(
        &self,
        lua: Lua,
        name: &str,
        args: &[&[u8]],
    ) -> Result<T, Failure> {
        let call = |command: &str, script: &str| {
            let mut call = redis::cmd(command);
            call.arg(script).arg(1).arg(name);
            for arg in args {
                call.arg(*arg);
            }
            call
        };
        let by_sha = call("EVALSHA", &self.shas[lua as usize]);
        match self.query(&by_sha).await {
            Err(Failure::Error(error))
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.query(&call("EVAL", lua.source())).await
            }
            answer => answer,
        }
    }
}

/// Why Redis gave no answer.
enum Failure {
    Error(redis::RedisError),
    Timeout(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Error(error) => write!(f, "{error}"),
            Self::Timeout(bound) => write!(f, "no answer within {bound:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    use super::*;

    fn record(n: u8, body: usize) -> Arc<Record> {
        Arc::new(Record {
            fingerprint: [n; 32],
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; body]),
        })
    }

    #[test]
    fn memory_stays_within_its_bound_and_keeps_the_latest_answers() {
        let bound = 64 << 10;
        let store = Store::new(Memory::new(bound), None);
        let hour = Duration::from_secs(3600);
        for n in 0..=255u8 {
            store.put([n; 32], record(n, 1_000), hour, None);
            store.memory.cache.run_pending_tasks();
            assert!(store.memory.cache.weighted_size() <= bound);
        }
        // Each weighs its 1,000 bytes, the record and the entry's overhead: about 40 fit.
        let kept = store.memory.cache.entry_count();
        assert!((30..50).contains(&kept), "{kept}");
        // Least recently used out first: the latest are there, the first are not.
        assert!(store.peek(&[255; 32]).is_some() && store.peek(&[254; 32]).is_some());
        assert!(store.peek(&[0; 32]).is_none());
        // One answer larger than the whole store is not kept.
        store.put([7; 32], record(7, 100 << 10), hour, None);
        store.memory.cache.run_pending_tasks();
        assert!(store.peek(&[7; 32]).is_none());
        assert!(store.memory.cache.weighted_size() <= bound);
    }
}

//! The Redis store: entries shared by every process, expiring by Redis's own `PX`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tollgate_core::{
    ConfigError,
    redis::{RedisConfig, RedisConnection, RedisTarget},
};

use super::{CacheStore, Lookup, StoreFuture, StoreStats};
use super::{DEFAULT_CACHE_PREFIX, DEFAULT_CACHE_TIMEOUT, DEFAULT_MAX_VALUE_BYTES};
use crate::{
    CacheKey, CachedResponse, WallClock,
    entry::{decode, encode},
};

/// Values compressed with LZ4 start with this line instead of the plain format's magic.
const LZ4_MAGIC: &[u8] = b"tollgate-cache v2 lz4\n";

/// The most a compressed value may expand, so a corrupt size cannot make a read allocate more
/// than this many times the value bound. Entries that would expand further are not written.
const MAX_EXPANSION: usize = 16;

/// Entries in Redis under `<prefix>:<key hex>`, shared by every process that uses the prefix.
///
/// Values are the same checksummed format the [`FileStore`](super::FileStore) writes, optionally
/// LZ4-compressed, and expire by `SET .. PX` at the entry's own time. A Redis that fails or is
/// slower than the timeout is a miss on read and a skipped write, never a failed request; a value
/// that does not decode (corrupt, truncated, written by something else) is a miss and is deleted.
///
/// In front of it, a [`MemoryStore`](super::MemoryStore) in a [`TieredStore`](super::TieredStore)
/// answers repeated reads without a round trip.
///
/// On a Redis Cluster each entry lands in its own key's slot, so entries spread over every
/// master, and [`clear`](CacheStore::clear) scans each master in turn. Behind Sentinel the store
/// follows the master the Sentinels name.
///
/// ```no_run
/// use tollgate_cache::{CacheConfig, CacheLayer, MemoryStore, RedisStore, TieredStore};
///
/// # async fn run() -> Result<(), tollgate_core::ConfigError> {
/// let shared = RedisStore::builder("redis://127.0.0.1:6379/").compress(true).build()?;
/// let store = TieredStore::new(MemoryStore::new(64 << 20), shared);
/// let layer = CacheLayer::new(store, CacheConfig::default())?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: RedisConnection,
    prefix: String,
    timeout: Duration,
    max_value_bytes: usize,
    compress: bool,
    clock: WallClock,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    errors: AtomicU64,
    corrupt: AtomicU64,
    skipped_writes: AtomicU64,
}

/// Counts of what went wrong in a [`RedisStore`], each of which was a miss or a skipped write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStoreErrors {
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Values that did not decode and were deleted.
    pub corrupt: u64,
    /// Writes skipped: too large, already expired, or failed.
    pub skipped_writes: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("errors", &self.errors())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A builder for a store on `redis`: a URL (`redis://host:port/db`), a [`RedisTarget`] (a
    /// cluster, Sentinel), or a [`RedisConnection`] shared with other layers.
    pub fn builder(redis: impl Into<RedisTarget>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            target: redis.into(),
            prefix: DEFAULT_CACHE_PREFIX.to_owned(),
            timeout: DEFAULT_CACHE_TIMEOUT,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            compress: false,
            clock: None,
        }
    }

    /// What went wrong so far.
    pub fn errors(&self) -> RedisStoreErrors {
        let counts = &self.inner.counts;
        RedisStoreErrors {
            errors: counts.errors.load(Ordering::Relaxed),
            corrupt: counts.corrupt.load(Ordering::Relaxed),
            skipped_writes: counts.skipped_writes.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn key(&self, key: &CacheKey) -> String {
        format!("{}:{}", self.prefix, key.to_hex())
    }

    /// Runs one command within the timeout; `None` (logged and counted) when it did not answer.
    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd, what: &str) -> Option<T> {
        let mut connection = self.connection.clone();
        let failure =
            match tokio::time::timeout(self.timeout, command.query_async(&mut connection)).await {
                Ok(Ok(value)) => return Some(value),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {:?}", self.timeout),
            };
        self.failed(what, &failure);
        None
    }

    fn failed(&self, what: &str, failure: &str) {
        self.counts.errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target: "tollgate::cache", error = %failure, "Redis cache {what} failed; treated as a miss");
    }

    async fn read(self: Arc<Self>, key: CacheKey) -> Option<Arc<CachedResponse>> {
        let name = self.key(&key);
        let bytes: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(&name), "read").await?;
        let bytes = bytes?;
        match self.decode(&bytes) {
            Ok(entry) => Some(Arc::new(entry)),
            Err(reason) => {
                self.counts.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "tollgate::cache", key = %name, reason, "corrupt Redis cache value; deleted");
                let _: Option<i64> = self.query(redis::cmd("DEL").arg(&name), "delete").await;
                None
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<CachedResponse, &'static str> {
        match bytes.strip_prefix(LZ4_MAGIC) {
            None => decode(bytes),
            Some(compressed) => {
                // The stated size comes first; refuse sizes no entry this store wrote could have.
                let stated = compressed
                    .get(..4)
                    .map(|n| u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize)
                    .ok_or("truncated compressed value")?;
                if stated > self.max_value_bytes.saturating_mul(MAX_EXPANSION) {
                    return Err("compressed value states an impossible size");
                }
                let plain = lz4_flex::decompress_size_prepended(compressed)
                    .map_err(|_| "compressed value does not decompress")?;
                decode(&plain)
            }
        }
    }

    async fn write(self: Arc<Self>, key: CacheKey, entry: Arc<CachedResponse>) {
        let ttl_ms = entry.expires_at_ms.saturating_sub(self.clock.now_ms());
        let plain = encode(&entry);
        let plain_len = plain.len();
        let value = if self.compress {
            let mut value = LZ4_MAGIC.to_vec();
            value.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
            value
        } else {
            plain
        };
        let too_large = value.len() > self.max_value_bytes
            || plain_len > self.max_value_bytes.saturating_mul(MAX_EXPANSION);
        if ttl_ms == 0 || too_large {
            self.counts.skipped_writes.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let command = redis::cmd("SET")
            .arg(self.key(&key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .to_owned();
        let written: Option<()> = self.query(&command, "write").await;
        if written.is_none() {
            self.counts.skipped_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn clear(self: Arc<Self>) {
        // SCAN's MATCH is a glob: a prefix's own glob characters must match only themselves.
        let mut pattern = String::with_capacity(self.prefix.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(":*");
        // Every master holds part of a cluster's keys; SCAN sees one node's.
        let masters = match tokio::time::timeout(self.timeout, self.connection.masters()).await {
            Ok(Ok(masters)) => masters,
            Ok(Err(error)) => return self.failed("clear", &error.to_string()),
            Err(_) => return self.failed("clear", &format!("no answer within {:?}", self.timeout)),
        };
        for master in masters {
            self.clear_on(&master, &pattern).await;
        }
    }

    async fn clear_on(&self, master: &str, pattern: &str) {
        let mut cursor: u64 = 0;
        loop {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .to_owned();
            let scanned =
                tokio::time::timeout(self.timeout, self.connection.query_on(master, &scan)).await;
            let (next, keys): (u64, Vec<String>) = match scanned {
                Ok(Ok(page)) => page,
                Ok(Err(error)) => return self.failed("clear", &error.to_string()),
                Err(_) => {
                    return self.failed("clear", &format!("no answer within {:?}", self.timeout));
                }
            };
            if !keys.is_empty() {
                let _: Option<i64> = self.query(redis::cmd("UNLINK").arg(keys), "clear").await;
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

impl CacheStore for RedisStore {
    fn get(&self, key: CacheKey) -> Lookup {
        Lookup::Pending(Box::pin(self.inner.clone().read(key)))
    }

    fn put(&self, key: CacheKey, entry: Arc<CachedResponse>) -> StoreFuture<()> {
        Box::pin(self.inner.clone().write(key, entry))
    }

    fn remove(&self, key: CacheKey) -> StoreFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let _: Option<i64> = inner
                .query(redis::cmd("DEL").arg(inner.key(&key)), "delete")
                .await;
        })
    }

    fn clear(&self) -> StoreFuture<()> {
        Box::pin(self.inner.clone().clear())
    }

    /// Redis keeps the entries and expires them itself; this store counts none of them here
    /// (`INFO keyspace` on the server has them). See [`RedisStore::errors`] for what went wrong.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}

/// Builds a [`RedisStore`].
#[must_use]
pub struct RedisStoreBuilder {
    target: RedisTarget,
    prefix: String,
    timeout: Duration,
    max_value_bytes: usize,
    compress: bool,
    clock: Option<WallClock>,
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("compress", &self.compress)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// Takes every cache setting of a configuration's `redis` section: keys under
    /// `<prefix>:cache`, `cache_timeout`, `cache_max_value_bytes` and `cache_compress`. The
    /// section's limiter settings are the limiter's, and where Redis is comes from the target
    /// given to [`builder`](RedisStore::builder).
    pub fn config(mut self, redis: &RedisConfig) -> Self {
        self.prefix = redis.cache_prefix();
        self.timeout = redis.cache_timeout;
        self.max_value_bytes = redis.cache_max_value_bytes;
        self.compress = redis.cache_compress;
        self
    }

    /// Names keys `<prefix>:<key hex>` (default [`DEFAULT_CACHE_PREFIX`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a read or write may take (default [`DEFAULT_CACHE_TIMEOUT`]); past it, a read is
    /// a miss and a write is skipped.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Values larger than this (after compression) are not written (default
    /// [`DEFAULT_MAX_VALUE_BYTES`]).
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Compresses values with LZ4 (default off). Answers in natural language shrink to about
    /// half; the cost is a few microseconds per kilobyte on each write and read.
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }

    /// Reads wall-clock time from `clock` (default: the system's), to turn expiry times into `PX`.
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The store. It connects lazily, so it starts while Redis is down (every read a miss until
    /// Redis answers); it must be built inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a bad URL, an empty prefix, a zero timeout or value bound, or no
    /// Tokio runtime.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        tollgate_core::non_zero("redis.timeout", self.timeout)?;
        if self.max_value_bytes == 0 {
            return Err(ConfigError::new(
                "redis.max_value_bytes",
                "must be at least 1",
            ));
        }
        if self.prefix.is_empty() {
            return Err(ConfigError::new("redis.prefix", "must not be empty"));
        }
        let connection = RedisConnection::open(&self.target, self.timeout, Duration::from_secs(1))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                prefix: self.prefix,
                timeout: self.timeout,
                max_value_bytes: self.max_value_bytes,
                compress: self.compress,
                clock: self.clock.unwrap_or_else(WallClock::system),
                counts: Counts::default(),
            }),
        })
    }
}

//! The file store: one file per entry in directories sharded by key prefix, written atomically,
//! bounded in bytes, cleaned in the background, and still there after a restart.

use std::{
    collections::{BTreeSet, HashMap},
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::task::JoinHandle;

use super::{CacheStore, Lookup, StoreFuture, StoreStats};
use crate::{
    CacheKey, CachedResponse, WallClock,
    entry::{decode, encode},
};

/// Entries as files under one directory: `<dir>/<first two hex digits>/<key>.entry`.
///
/// Writes go to a temporary file in the same directory and are renamed into place, so a reader
/// never sees half an entry. An index of sizes and ages kept in memory (rebuilt by reading the
/// directory when the store opens) bounds the total size: past it, the oldest entries go first.
/// A file that cannot be decoded is a miss and is removed. With [`FileStoreBuilder::cleanup_every`]
/// a background task removes expired entries; it stops when the last clone of the store is dropped.
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    max_entries: usize,
    clock: WallClock,
    index: Mutex<Index>,
    evictions: AtomicU64,
    expirations: AtomicU64,
    temp_counter: AtomicU64,
    cleanup: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .cleanup
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// The smallest space a file takes on a typical filesystem.
const BLOCK: u64 = 4096;

#[derive(Default)]
struct Index {
    entries: HashMap<CacheKey, Meta>,
    by_age: BTreeSet<(u64, CacheKey)>,
    bytes: u64,
}

#[derive(Clone, Copy)]
struct Meta {
    size: u64,
    stored_at_ms: u64,
    expires_at_ms: u64,
}

impl Index {
    fn insert(&mut self, key: CacheKey, meta: Meta) {
        self.remove(&key);
        self.bytes += meta.size;
        self.by_age.insert((meta.stored_at_ms, key));
        self.entries.insert(key, meta);
    }

    fn remove(&mut self, key: &CacheKey) -> Option<Meta> {
        let meta = self.entries.remove(key)?;
        self.bytes -= meta.size;
        self.by_age.remove(&(meta.stored_at_ms, *key));
        Some(meta)
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Opens a [`FileStore`].
#[must_use]
#[derive(Debug)]
pub struct FileStoreBuilder {
    dir: PathBuf,
    max_bytes: u64,
    max_entries: Option<usize>,
    clock: WallClock,
    cleanup_every: Option<Duration>,
}

impl FileStoreBuilder {
    /// At most `max_bytes` of files (default 1 GiB).
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// At most `max_entries` files (default: one per 4 KiB of `max_bytes`, at least one). Each
    /// entry costs 150 to 200 bytes of index in memory, and a file takes at least one 4 KiB block
    /// on disk whatever its length, so the default keeps both in proportion to `max_bytes` however
    /// small the answers are: past it, the oldest entries go first, as past `max_bytes`.
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = Some(max_entries);
        self
    }

    /// Reads wall-clock time from `clock` (default: the system's), to judge expiry.
    pub fn clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// Removes expired entries in the background this often (default: never; expired entries
    /// are still never served, and are removed when read or evicted).
    pub fn cleanup_every(mut self, every: Duration) -> Self {
        self.cleanup_every = Some(every);
        self
    }

    /// Opens the store, creating the directory if needed and indexing what is already there
    /// (removing files that are corrupt or expired). Needs a tokio runtime when cleanup is on.
    ///
    /// # Errors
    ///
    /// The I/O error when the directory cannot be created or read, and
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) when `max_entries` is zero.
    pub fn open(self) -> io::Result<FileStore> {
        let max_entries = self.max_entries.unwrap_or_else(|| {
            usize::try_from(self.max_bytes / BLOCK)
                .unwrap_or(usize::MAX)
                .max(1)
        });
        if max_entries == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_entries: must be at least 1",
            ));
        }
        std::fs::create_dir_all(&self.dir)?;
        let now = self.clock.now_ms();
        let mut index = Index::default();
        for shard in std::fs::read_dir(&self.dir)? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&shard)? {
                let path = file?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let Some(key) = name.strip_suffix(".entry").and_then(CacheKey::from_hex) else {
                    // A temporary file left by a crash mid-write: it was never visible.
                    if name.starts_with('.') {
                        let _ = std::fs::remove_file(&path);
                    }
                    continue;
                };
                match std::fs::read(&path)
                    .map_err(|_| "unreadable")
                    .and_then(|b| decode(&b))
                {
                    Ok(entry) if !entry.is_expired(now) => {
                        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                        index.insert(
                            key,
                            Meta {
                                size,
                                stored_at_ms: entry.stored_at_ms,
                                expires_at_ms: entry.expires_at_ms,
                            },
                        );
                    }
                    Ok(_) => {
                        let _ = std::fs::remove_file(&path);
                    }
                    Err(reason) => {
                        tracing::warn!(target: "tollgate::cache", path = %path.display(), reason, "removing a corrupt cache file");
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        let store = FileStore {
            inner: Arc::new(Inner {
                dir: self.dir,
                max_bytes: self.max_bytes,
                max_entries,
                clock: self.clock,
                index: Mutex::new(index),
                evictions: AtomicU64::new(0),
                expirations: AtomicU64::new(0),
                temp_counter: AtomicU64::new(0),
                cleanup: Mutex::new(None),
            }),
        };
        store.inner.evict_to_bound();
        if let Some(every) = self.cleanup_every {
            let weak = Arc::downgrade(&store.inner);
            let task = tokio::spawn(cleanup(weak, every));
            *store.inner.lock_cleanup() = Some(task);
        }
        Ok(store)
    }
}

async fn cleanup(store: Weak<Inner>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        store.remove_expired().await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_cleanup(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.cleanup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        let hex = key.to_hex();
        self.dir.join(&hex[..2]).join(format!("{hex}.entry"))
    }

    /// Removes the oldest entries until the total and the count are under their bounds.
    fn evict_to_bound(&self) {
        let mut doomed = Vec::new();
        {
            let mut index = self.lock();
            while index.bytes > self.max_bytes || index.entries.len() > self.max_entries {
                let Some(&(_, key)) = index.by_age.iter().next() else {
                    break;
                };
                index.remove(&key);
                doomed.push(key);
            }
        }
        self.evictions
            .fetch_add(doomed.len() as u64, Ordering::Relaxed);
        for key in doomed {
            let _ = std::fs::remove_file(self.path(&key));
        }
    }

    async fn remove_expired(&self) {
        let now = self.clock.now_ms();
        let expired: Vec<CacheKey> = {
            let mut index = self.lock();
            let keys: Vec<CacheKey> = index
                .entries
                .iter()
                .filter(|(_, meta)| meta.expires_at_ms <= now)
                .map(|(key, _)| *key)
                .collect();
            for key in &keys {
                index.remove(key);
            }
            keys
        };
        self.expirations
            .fetch_add(expired.len() as u64, Ordering::Relaxed);
        for key in expired {
            let _ = tokio::fs::remove_file(self.path(&key)).await;
        }
    }

    async fn read(self: Arc<Self>, key: CacheKey) -> Option<Arc<CachedResponse>> {
        if !self.lock().entries.contains_key(&key) {
            return None;
        }
        let path = self.path(&key);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(target: "tollgate::cache", path = %path.display(), %error, "cache file unreadable: a miss");
                }
                self.lock().remove(&key);
                return None;
            }
        };
        match decode(&bytes) {
            Ok(entry) => Some(Arc::new(entry)),
            Err(reason) => {
                tracing::warn!(target: "tollgate::cache", path = %path.display(), reason, "corrupt cache file: a miss, removed");
                self.lock().remove(&key);
                let _ = tokio::fs::remove_file(&path).await;
                None
            }
        }
    }

    async fn write(self: Arc<Self>, key: CacheKey, entry: Arc<CachedResponse>) {
        let path = self.path(&key);
        let bytes = encode(&entry);
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = path.with_file_name(format!(".{}.{n}.tmp", key.to_hex()));
        let written = async {
            tokio::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).await?;
            tokio::fs::write(&temp, &bytes).await?;
            tokio::fs::rename(&temp, &path).await
        }
        .await;
        if let Err(error) = written {
            tracing::warn!(target: "tollgate::cache", path = %path.display(), %error, "cache write failed: entry not stored");
            let _ = tokio::fs::remove_file(&temp).await;
            return;
        }
        self.lock().insert(
            key,
            Meta {
                size: bytes.len() as u64,
                stored_at_ms: entry.stored_at_ms,
                expires_at_ms: entry.expires_at_ms,
            },
        );
        self.evict_to_bound();
    }
}

impl FileStore {
    /// A builder for a store in `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> FileStoreBuilder {
        FileStoreBuilder {
            dir: dir.into(),
            max_bytes: 1 << 30,
            max_entries: None,
            clock: WallClock::system(),
            cleanup_every: None,
        }
    }

    /// Opens a store in `dir` with the defaults (1 GiB, no background cleanup).
    ///
    /// # Errors
    ///
    /// The I/O error when the directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        Self::builder(dir).open()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl CacheStore for FileStore {
    fn get(&self, key: CacheKey) -> Lookup {
        Lookup::Pending(Box::pin(self.inner.clone().read(key)))
    }

    fn put(&self, key: CacheKey, entry: Arc<CachedResponse>) -> StoreFuture<()> {
        Box::pin(self.inner.clone().write(key, entry))
    }

    fn remove(&self, key: CacheKey) -> StoreFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.lock().remove(&key);
            let _ = tokio::fs::remove_file(inner.path(&key)).await;
        })
    }

    fn clear(&self) -> StoreFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let keys: Vec<CacheKey> = {
                let mut index = inner.lock();
                let keys = index.entries.keys().copied().collect();
                *index = Index::default();
                keys
            };
            for key in keys {
                let _ = tokio::fs::remove_file(inner.path(&key)).await;
            }
        })
    }

    fn stats(&self) -> StoreStats {
        let index = self.inner.lock();
        StoreStats {
            entries: index.entries.len() as u64,
            bytes: index.bytes,
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            expirations: self.inner.expirations.load(Ordering::Relaxed),
        }
    }
}

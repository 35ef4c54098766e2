//! [`SentinelTarget`]: a master found through Redis Sentinel; and the master the Sentinels name,
//! asked again whenever the one in use stops answering or answers as a replica.

use std::{
    fmt,
    future::Future,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    RedisConnectionInfo, RedisResult,
    aio::ConnectionManager,
    sentinel::{Sentinel as Sentinels, SentinelNodeConnectionInfo},
};

use super::node::{Throttle, manager, shown, watched};
use crate::{
    ConfigError,
    telemetry::{self, Counter},
};

/// The least time between two questions to the Sentinels.
const ASK_EVERY: Duration = Duration::from_millis(100);

pub(super) struct Sentinel {
    sentinels: tokio::sync::Mutex<Sentinels>,
    master_name: String,
    node: SentinelNodeConnectionInfo,
    db: i64,
    timeout: Duration,
    max_backoff: Duration,
    /// The master in use (`host:port`) and its connection; `None` until the Sentinels first answer.
    current: RwLock<Option<(String, ConnectionManager)>>,
    /// Set when the master in use failed as a replaced master would, or a call to it was dropped
    /// unanswered: the next call asks the Sentinels again.
    suspect: AtomicBool,
    asking: Throttle,
    switches: AtomicU64,
    counter: Counter,
}

impl Sentinel {
    pub(super) fn new(
        target: &SentinelTarget,
        timeout: Duration,
        max_backoff: Duration,
    ) -> Result<Self, ConfigError> {
        if target.sentinels.is_empty() {
            return Err(ConfigError::new(
                "redis.sentinel.nodes",
                "list at least one Sentinel",
            ));
        }
        let sentinels = Sentinels::build(target.sentinels.clone())
            .map_err(|e| ConfigError::new("redis.sentinel.nodes", e.to_string()))?;
        let mut info = RedisConnectionInfo::default().set_db(target.db);
        if let Some(username) = &target.username {
            info = info.set_username(username.clone());
        }
        if let Some(password) = &target.password {
            info = info.set_password(password.clone());
        }
        Ok(Self {
            sentinels: tokio::sync::Mutex::new(sentinels),
            master_name: target.master_name.clone(),
            node: SentinelNodeConnectionInfo::default().set_redis_connection_info(info),
            db: target.db,
            timeout,
            max_backoff,
            current: RwLock::new(None),
            suspect: AtomicBool::new(false),
            asking: Throttle::new(ASK_EVERY),
            switches: AtomicU64::new(0),
            counter: Counter::new(
                telemetry::REDIS_MASTER_SWITCHES,
                &[("topology", "sentinel".to_owned())],
            ),
        })
    }

    pub(super) fn db(&self) -> i64 {
        self.db
    }

    pub(super) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// The connection to the master in use, asking the Sentinels first when there is none yet
    /// or the last one looked replaced.
    pub(super) async fn connection(self: &Arc<Self>) -> RedisResult<ConnectionManager> {
        if self.suspect.load(Ordering::Relaxed) {
            self.ask_later();
        }
        if let Some((_, connection)) = &*self.current.read().expect("never poisoned") {
            return Ok(connection.clone());
        }
        self.ask().await?;
        let current = self.current.read().expect("never poisoned");
        Ok(current.as_ref().expect("set by ask").1.clone())
    }

    /// The master in use, as `host:port`.
    pub(super) async fn master(self: &Arc<Self>) -> RedisResult<String> {
        self.connection().await?;
        let current = self.current.read().expect("never poisoned");
        Ok(current.as_ref().expect("connected").0.clone())
    }

    /// Runs `call` on the master, noting whether its outcome says the master may have changed.
    pub(super) async fn observe<T>(
        self: Arc<Self>,
        call: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        watched(&self.suspect, call).await
    }

    /// Asks the Sentinels in the background: one question at a time, at most every
    /// [`ASK_EVERY`].
    fn ask_later(self: &Arc<Self>) {
        if !self.asking.start() {
            return;
        }
        self.suspect.store(false, Ordering::Relaxed);
        let sentinel = self.clone();
        tokio::spawn(async move {
            if let Err(error) = sentinel.ask().await {
                tracing::debug!(target: "tollgate::redis", %error, "the Sentinels did not name a master");
            }
            sentinel.asking.done();
        });
    }

    /// Asks the Sentinels which master serves the name, and switches to it when it changed.
    async fn ask(&self) -> RedisResult<()> {
        let client = {
            let mut sentinels = self.sentinels.lock().await;
            let asking = sentinels.async_master_for(&self.master_name, Some(&self.node));
            tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), asking)
                .await
                .map_err(|_| {
                    redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the Sentinels did not answer in time",
                    ))
                })??
        };
        let address = client.get_connection_info().addr().to_string();
        let mut current = self.current.write().expect("never poisoned");
        let before = match &*current {
            Some((before, _)) if *before == address => return Ok(()),
            Some((before, _)) => Some(before.clone()),
            None => None,
        };
        let connection = manager(client, self.timeout, self.max_backoff).map_err(|error| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot connect to the master",
                error.to_string(),
            ))
        })?;
        *current = Some((address.clone(), connection));
        drop(current);
        match before {
            None => tracing::debug!(
                target: "tollgate::redis",
                master = %address,
                name = %self.master_name,
                "the Sentinels name the master"
            ),
            Some(before) => {
                self.switches.fetch_add(1, Ordering::Relaxed);
                self.counter.increment(1);
                tracing::warn!(
                    target: "tollgate::redis",
                    from = %before,
                    to = %address,
                    name = %self.master_name,
                    "the Sentinels name a new master; calls go to {address} now"
                );
            }
        }
        Ok(())
    }
}

/// A master found through Redis Sentinel.
#[derive(Clone, Default)]
pub struct SentinelTarget {
    /// The name the Sentinels monitor the master under (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// The Sentinels' URLs (`redis://[user:password@]host:26379/`); asked in order.
    pub sentinels: Vec<String>,
    /// The database on the master.
    pub db: i64,
    /// The master's user, when it has ACLs.
    pub username: Option<String>,
    /// The master's password (never shown by `Debug`).
    pub password: Option<String>,
}

impl SentinelTarget {
    /// The master named `master_name` by these Sentinels, database 0, no password.
    pub fn new<S: Into<String>>(
        master_name: impl Into<String>,
        sentinels: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            master_name: master_name.into(),
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

impl fmt::Debug for SentinelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelTarget")
            .field("master_name", &self.master_name)
            .field(
                "sentinels",
                &self.sentinels.iter().map(|s| shown(s)).collect::<Vec<_>>(),
            )
            .field("db", &self.db)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

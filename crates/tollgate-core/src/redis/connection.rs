//! [`RedisTarget`]: where Redis is; and [`RedisConnection`]: one type over the three ways to
//! reach it, usable wherever redis-rs takes an async connection (it implements
//! `redis::aio::ConnectionLike`).

use std::{fmt, sync::Arc, time::Duration};

use redis::{
    Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster::ClusterClient,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

use super::{
    cluster::Watch,
    node::{connect_timeout, in_runtime, manager, shown},
    sentinel::{Sentinel, SentinelTarget},
};
use crate::ConfigError;

/// Where Redis is.
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisTarget {
    /// One server at a `redis://[user:password@]host:port/db` URL.
    Server(String),
    /// A Redis Cluster, found through any of these nodes' URLs (the first one's user and password
    /// are used for every node).
    Cluster(Vec<String>),
    /// The master the Sentinels name.
    Sentinel(SentinelTarget),
    /// A connection already open, shared with other layers.
    Shared(RedisConnection),
}

impl RedisTarget {
    /// A Redis Cluster found through `nodes`.
    pub fn cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        Self::Cluster(nodes.into_iter().map(Into::into).collect())
    }

    /// Whether this is (or is open on) a Redis Cluster, where every script's keys must share a
    /// slot.
    pub fn is_cluster(&self) -> bool {
        match self {
            Self::Cluster(_) => true,
            Self::Shared(connection) => connection.topology() == Topology::Cluster,
            Self::Server(_) | Self::Sentinel(_) => false,
        }
    }
}

impl From<&str> for RedisTarget {
    fn from(url: &str) -> Self {
        Self::Server(url.to_owned())
    }
}

impl From<String> for RedisTarget {
    fn from(url: String) -> Self {
        Self::Server(url)
    }
}

impl From<&String> for RedisTarget {
    fn from(url: &String) -> Self {
        Self::Server(url.clone())
    }
}

impl From<RedisConnection> for RedisTarget {
    fn from(connection: RedisConnection) -> Self {
        Self::Shared(connection)
    }
}

impl fmt::Debug for RedisTarget {
    // URLs may carry passwords: only where they point is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server(url) => f.debug_tuple("Server").field(&shown(url)).finish(),
            Self::Cluster(nodes) => f
                .debug_tuple("Cluster")
                .field(&nodes.iter().map(|n| shown(n)).collect::<Vec<_>>())
                .finish(),
            Self::Sentinel(sentinel) => f.debug_tuple("Sentinel").field(sentinel).finish(),
            Self::Shared(connection) => f.debug_tuple("Shared").field(connection).finish(),
        }
    }
}

/// How a [`RedisConnection`] reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server.
    Server,
    /// A Redis Cluster: keys are spread over several masters by slot.
    Cluster,
    /// The master named by Redis Sentinel, which may change.
    Sentinel,
}

impl Topology {
    /// `server`, `cluster` or `sentinel`, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Cluster => "cluster",
            Self::Sentinel => "sentinel",
        }
    }
}

/// A lazily connected, self-healing connection to Redis; cheap to clone, and every clone shares
/// it. See [the module](super) for how it follows failovers.
#[derive(Clone)]
pub struct RedisConnection {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Server(ConnectionManager, Arc<str>),
    Cluster(Arc<Watch>),
    Sentinel(Arc<Sentinel>),
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("RedisConnection");
        out.field("topology", &self.topology());
        match &self.kind {
            Kind::Server(_, shown) => out.field("server", shown),
            Kind::Cluster(..) | Kind::Sentinel(_) => {
                out.field("master_switches", &self.master_switches())
            }
        };
        out.finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Opens a connection to `target` that connects on first use and reconnects by itself, with
    /// connection attempts bounded by `timeout` (at least 100 ms) and backing off up to
    /// `max_backoff` between them. A [`RedisTarget::Shared`] connection is returned as it is.
    ///
    /// # Errors
    ///
    /// A URL redis-rs cannot parse (the path names it: `redis.url`, `redis.cluster.nodes`,
    /// `redis.sentinel.nodes`); no Tokio runtime (the connection runs on it).
    pub fn open(
        target: &RedisTarget,
        timeout: Duration,
        max_backoff: Duration,
    ) -> Result<Self, ConfigError> {
        if let RedisTarget::Shared(connection) = target {
            return Ok(connection.clone());
        }
        in_runtime()?;
        let kind = match target {
            RedisTarget::Server(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| ConfigError::new("redis.url", e.to_string()))?;
                Kind::Server(manager(client, timeout, max_backoff)?, shown(url).into())
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(connect_timeout(timeout))
                    .retries(2)
                    .min_retry_wait(5)
                    .max_retry_wait(max_backoff.as_millis().clamp(5, 1_000) as u64)
                    .build()
                    .map_err(|e| ConfigError::new("redis.cluster.nodes", e.to_string()))?;
                Kind::Cluster(Arc::new(Watch::new(client, connect_timeout(timeout))))
            }
            RedisTarget::Sentinel(sentinel) => {
                Kind::Sentinel(Arc::new(Sentinel::new(sentinel, timeout, max_backoff)?))
            }
            RedisTarget::Shared(_) => unreachable!("returned above"),
        };
        Ok(Self { kind })
    }

    /// How this connection reaches Redis.
    pub fn topology(&self) -> Topology {
        match self.kind {
            Kind::Server(..) => Topology::Server,
            Kind::Cluster(..) => Topology::Cluster,
            Kind::Sentinel(_) => Topology::Sentinel,
        }
    }

    /// How many times a master was replaced under this connection (a Cluster failover moving
    /// slots to another node, or the Sentinels naming another master) since it was opened.
    pub fn master_switches(&self) -> u64 {
        match &self.kind {
            Kind::Server(..) => 0,
            Kind::Cluster(watch) => watch.switches(),
            Kind::Sentinel(sentinel) => sentinel.switches(),
        }
    }

    /// The masters holding data now, as `host:port`: every master of a cluster, or the one
    /// server (or Sentinel's master). Commands that work on a whole keyspace (`SCAN`) run on each
    /// with [`query_on`](Self::query_on).
    ///
    /// # Errors
    ///
    /// When Redis does not answer.
    pub async fn masters(&self) -> RedisResult<Vec<String>> {
        match &self.kind {
            Kind::Server(_, shown) => Ok(vec![shown.to_string()]),
            Kind::Cluster(watch) => Ok(super::cluster::masters(&watch.connection())
                .await?
                .into_iter()
                .map(|(_, _, master)| master)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()),
            Kind::Sentinel(sentinel) => Ok(vec![sentinel.master().await?]),
        }
    }

    /// Runs `cmd` on the master at `master` (one of [`masters`](Self::masters)); off a cluster,
    /// on the one master whatever `master` says.
    ///
    /// # Errors
    ///
    /// When Redis does not answer, or answers with an error.
    pub async fn query_on<T: FromRedisValue>(&self, master: &str, cmd: &Cmd) -> RedisResult<T> {
        let mut connection = self.clone();
        let value = match &connection.kind {
            Kind::Cluster(watch) => {
                let (host, port) = master.rsplit_once(':').ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "not a host:port",
                    ))
                })?;
                let port = port.parse().map_err(|_| {
                    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad port"))
                })?;
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port,
                });
                let mut cluster = watch.connection();
                let call = cluster.route_command(cmd.clone(), routing);
                watch.clone().observe(call).await?
            }
            _ => connection.req_packed_command(cmd).await?,
        };
        T::from_redis_value(value).map_err(Into::into)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.kind {
            Kind::Server(connection, _) => connection.req_packed_command(cmd),
            Kind::Cluster(watch) => {
                let watch = watch.clone();
                Box::pin(async move {
                    let mut connection = watch.connection();
                    watch
                        .clone()
                        .observe(connection.req_packed_command(cmd))
                        .await
                })
            }
            Kind::Sentinel(sentinel) => {
                let sentinel = sentinel.clone();
                Box::pin(async move {
                    let mut connection = sentinel.connection().await?;
                    sentinel.observe(connection.req_packed_command(cmd)).await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.kind {
            Kind::Server(connection, _) => connection.req_packed_commands(pipeline, offset, count),
            Kind::Cluster(watch) => {
                let watch = watch.clone();
                Box::pin(async move {
                    let mut connection = watch.connection();
                    let call = connection.req_packed_commands(pipeline, offset, count);
                    watch.clone().observe(call).await
                })
            }
            Kind::Sentinel(sentinel) => {
                let sentinel = sentinel.clone();
                Box::pin(async move {
                    let mut connection = sentinel.connection().await?;
                    sentinel
                        .observe(connection.req_packed_commands(pipeline, offset, count))
                        .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            Kind::Server(connection, _) => connection.get_db(),
            Kind::Cluster(_) => 0,
            Kind::Sentinel(sentinel) => sentinel.db(),
        }
    }
}

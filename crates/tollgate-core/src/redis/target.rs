//! [`RedisTarget`]: where Redis is, from code or from a configuration's `redis` section.

use std::fmt;

use super::{ClusterConfig, RedisConnection, SentinelConfig, Topology};
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

/// The target a configuration's `redis` section names: exactly one of `url`, `cluster` and
/// `sentinel`. `env` reads `sentinel.password_env`. Mistakes are named under `redis`.
///
/// # Errors
///
/// None or more than one of the three; an empty node list; a URL that is not `redis://` (or
/// `rediss://`, `unix://`, `redis+unix://`); a password variable that is not set.
pub fn target_of(
    url: Option<&str>,
    cluster: Option<&ClusterConfig>,
    sentinel: Option<&SentinelConfig>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RedisTarget, ConfigError> {
    let given = [url.is_some(), cluster.is_some(), sentinel.is_some()];
    match given.iter().filter(|given| **given).count() {
        0 => {
            return Err(ConfigError::new(
                "redis",
                "name the Redis to use: `url` (one server), `cluster: { nodes }` or `sentinel: { master_name, nodes }`",
            ));
        }
        1 => {}
        _ => {
            return Err(ConfigError::new(
                "redis",
                "give only one of `url`, `cluster` and `sentinel`",
            ));
        }
    }
    if let Some(url) = url {
        check_url("redis.url", url)?;
        return Ok(RedisTarget::Server(url.to_owned()));
    }
    if let Some(cluster) = cluster {
        check_nodes("redis.cluster.nodes", &cluster.nodes)?;
        return Ok(RedisTarget::Cluster(cluster.nodes.clone()));
    }
    let sentinel = sentinel.expect("one of the three");
    check_nodes("redis.sentinel.nodes", &sentinel.nodes)?;
    if sentinel.master_name.trim().is_empty() {
        return Err(ConfigError::new(
            "redis.sentinel.master_name",
            "must not be empty",
        ));
    }
    let password = match &sentinel.password_env {
        None => None,
        Some(var) => Some(env(var).ok_or_else(|| {
            ConfigError::new(
                "redis.sentinel.password_env",
                format!("the environment variable {var} is not set"),
            )
        })?),
    };
    Ok(RedisTarget::Sentinel(SentinelTarget {
        master_name: sentinel.master_name.clone(),
        sentinels: sentinel.nodes.clone(),
        db: sentinel.db,
        username: sentinel.username.clone(),
        password,
    }))
}

fn check_nodes(path: &str, nodes: &[String]) -> Result<(), ConfigError> {
    if nodes.is_empty() {
        return Err(ConfigError::new(path, "list at least one node"));
    }
    for (i, node) in nodes.iter().enumerate() {
        check_url(&format!("{path}.{i}"), node)?;
    }
    Ok(())
}

fn check_url(path: &str, url: &str) -> Result<(), ConfigError> {
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+unix://"];
    if SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!(
                "must start with redis:// (or rediss://, unix://, redis+unix://), got {:?}",
                shown(url)
            ),
        ))
    }
}

/// Where `url` points (`host:port`, or a socket path), as redis-rs reads it: never the user or
/// the password, so no message or `Debug` repeats them.
pub fn shown(url: &str) -> String {
    redis::IntoConnectionInfo::into_connection_info(url).map_or_else(
        |_| "an invalid Redis URL".to_owned(),
        |info| info.addr().to_string(),
    )
}

//! The one Redis connection every layer with a Redis store uses (feature `redis`): a single
//! server, a Redis Cluster, or the master a set of Sentinels names. The configuration's shapes
//! ([`ClusterConfig`], [`SentinelConfig`]) are here in every build.
//!
//! [`RedisTarget`] says where Redis is; [`RedisConnection::open`] connects to it lazily (a
//! service starts while Redis is down) and keeps following it: redis-rs's cluster client follows
//! `MOVED` and refreshes its slot map after a failover, and the Sentinel connection asks the
//! Sentinels for the master again whenever the one it has stops answering or turns read-only.
//! Every change of master is logged and counted ([`RedisConnection::master_switches`], and the
//! metric `tollgate.redis.master_switches`).
//!
//! ```no_run
//! use std::time::Duration;
//! use tollgate_core::redis::{RedisConnection, RedisTarget, SentinelTarget};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server: RedisTarget = "redis://127.0.0.1:6379/".into();
//! let cluster = RedisTarget::cluster(["redis://10.0.0.1:7000/", "redis://10.0.0.2:7000/"]);
//! let sentinel = RedisTarget::Sentinel(SentinelTarget::new(
//!     "mymaster",
//!     ["redis://10.0.0.5:26379/", "redis://10.0.0.6:26379/"],
//! ));
//! let mut connection = RedisConnection::open(&cluster, Duration::from_millis(100), Duration::from_secs(1))?;
//! let pong: String = redis::cmd("PING").query_async(&mut connection).await?;
//! # let _ = (server, sentinel, pong); Ok(()) }
//! ```

#[cfg(feature = "redis")]
mod cluster;
#[cfg(feature = "redis")]
mod connection;
#[cfg(feature = "redis")]
mod node;
#[cfg(feature = "redis")]
mod sentinel;
#[cfg(feature = "redis")]
mod target;

use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub use connection::{RedisConnection, Topology};
#[cfg(feature = "redis")]
pub use target::{RedisTarget, SentinelTarget, shown, target_of};

/// The `cluster` part of a configuration's `redis` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Some of the cluster's nodes (`redis://host:port/`); the rest are found through them.
    pub nodes: Vec<String>,
}

/// The `sentinel` part of a configuration's `redis` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The name the Sentinels monitor the master under.
    pub master_name: String,
    /// The Sentinels' URLs.
    pub nodes: Vec<String>,
    /// The database on the master (default 0).
    #[serde(default)]
    pub db: i64,
    /// The master's user, when it has ACLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The environment variable holding the master's password (the password itself is never
    /// written in a configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

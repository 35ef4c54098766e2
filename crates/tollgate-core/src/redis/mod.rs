//! The one Redis connection every layer with a Redis store uses (feature `redis`): a single
//! server, a Redis Cluster, or the master a set of Sentinels names. The configuration's one
//! `redis` section ([`RedisConfig`]) is here in every build.
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
mod config;
#[cfg(feature = "redis")]
mod connection;
#[cfg(feature = "redis")]
mod node;
#[cfg(feature = "redis")]
mod sentinel;

#[cfg(feature = "redis")]
pub use config::target_of;
pub use config::{
    ClusterConfig, DEFAULT_CACHE_TIMEOUT, DEFAULT_FAILURE_THRESHOLD, DEFAULT_LIMITER_TIMEOUT,
    DEFAULT_LOCAL_SHARE, DEFAULT_MAX_VALUE_BYTES, DEFAULT_PREFIX, DEFAULT_PROBE_INTERVAL,
    LeaseConfig, OnFailureConfig, REDIS_URL_VAR, RedisConfig, SentinelConfig,
};
#[cfg(feature = "redis")]
pub use connection::{RedisConnection, RedisTarget, Topology};
#[cfg(feature = "redis")]
pub use node::shown;
#[cfg(feature = "redis")]
pub use sentinel::SentinelTarget;

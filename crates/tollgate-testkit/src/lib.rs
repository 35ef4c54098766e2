//! Test support for tollgate's own tests (not published).
//!
//! [`RedisServer`] starts a real `redis-server` on a free loopback port in a private temporary
//! directory and stops it when dropped; [`RedisCluster`] starts a real Redis Cluster (three
//! masters, and three replicas for failover tests) joined by `redis-cli --cluster create`;
//! [`RedisSentinel`] starts a master (and a replica) watched by real Sentinels. [`TestRedis`]
//! is any of the three, chosen by a [`Topology`], so one test body runs on each
//! ([`each_topology!`]). When `redis-server` (or `redis-cli`) is not installed the fixture skips the
//! test with a printed reason, unless `TOLLGATE_REQUIRE_REDIS=1` is set (as CI sets it), in which
//! case it fails the test instead: a missing Redis must never turn into a silently green run.
//!
//! [`TestPostgres`] starts a real PostgreSQL (`initdb`, `pg_ctl`) on a free loopback port in a
//! private temporary directory, the same way, under `TOLLGATE_REQUIRE_POSTGRES`.
//!
//! ```no_run
//! use tollgate_testkit::RedisServer;
//!
//! let Some(redis) = RedisServer::start() else { return }; // skipped: no redis-server
//! redis.command(&["SET", "k", "v"]).unwrap();
//! assert_eq!(redis.command(&["GET", "k"]).unwrap(), tollgate_testkit::Reply::Bulk(b"v".to_vec()));
//! println!("redis at {}", redis.url());
//! ```

mod cluster;
mod database;
mod postgres;
mod process;
mod reply;
mod sentinel;
mod server;

use std::io;

pub use cluster::RedisCluster;
pub use database::TestDatabase;
pub use postgres::{REQUIRE_POSTGRES, TestPostgres};
pub use process::REQUIRE_REDIS;
pub use reply::Reply;
pub use sentinel::{MASTER_NAME, RedisSentinel};
pub use server::RedisServer;
use tollgate_core::redis::{RedisTarget, SentinelTarget};

/// Which kind of Redis a [`TestRedis`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server.
    Server,
    /// A three-master Redis Cluster.
    Cluster,
    /// A master named by a Sentinel.
    Sentinel,
}

/// A real Redis of any [`Topology`], with what tests do to it: reach it, send it a command, kill
/// it, bring it back empty.
#[derive(Debug)]
pub enum TestRedis {
    /// One server.
    Server(RedisServer),
    /// A Redis Cluster.
    Cluster(RedisCluster),
    /// A master behind Sentinel.
    Sentinel(RedisSentinel),
}

impl TestRedis {
    /// Starts a Redis of `topology`, or `None` when the binaries are missing and not required
    /// (as [`RedisServer::start`]).
    pub fn start(topology: Topology) -> Option<Self> {
        Some(match topology {
            Topology::Server => Self::Server(RedisServer::start()?),
            Topology::Cluster => Self::Cluster(RedisCluster::start()?),
            Topology::Sentinel => Self::Sentinel(RedisSentinel::start()?),
        })
    }

    /// Where clients find it.
    pub fn target(&self) -> RedisTarget {
        match self {
            Self::Server(server) => RedisTarget::Server(server.url()),
            Self::Cluster(cluster) => RedisTarget::Cluster(cluster.urls()),
            Self::Sentinel(sentinel) => {
                RedisTarget::Sentinel(SentinelTarget::new(MASTER_NAME, sentinel.urls()))
            }
        }
    }

    /// How a configuration's `redis` section names it, in YAML's flow style: `url: "..."`,
    /// `cluster: { nodes: [...] }` or `sentinel: { master_name: ..., nodes: [...] }`.
    pub fn yaml(&self) -> String {
        let list = |urls: Vec<String>| format!("[{}]", urls.join(", "));
        match self {
            Self::Server(server) => format!("url: \"{}\"", server.url()),
            Self::Cluster(cluster) => format!("cluster: {{ nodes: {} }}", list(cluster.urls())),
            Self::Sentinel(sentinel) => format!(
                "sentinel: {{ master_name: {MASTER_NAME}, nodes: {} }}",
                list(sentinel.urls())
            ),
        }
    }

    /// Sends one command where it belongs (on a cluster, by its key; keyless ones to every
    /// master); a Redis error reply is `Ok(Reply::Error)`.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached.
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        match self {
            Self::Server(server) => server.command(args),
            Self::Cluster(cluster) => cluster.command(args),
            Self::Sentinel(sentinel) => sentinel.command(args),
        }
    }

    /// Kills every process holding data, as a crash would: Redis is gone.
    pub fn kill(&mut self) {
        match self {
            Self::Server(server) => server.kill(),
            Self::Cluster(cluster) => cluster.kill(),
            Self::Sentinel(sentinel) => sentinel.kill(),
        }
    }

    /// Starts them again where they were, with empty memory, and waits until Redis answers.
    pub fn restart(&mut self) {
        match self {
            Self::Server(server) => server.restart(),
            Self::Cluster(cluster) => cluster.restart(),
            Self::Sentinel(sentinel) => sentinel.restart(),
        }
    }
}

/// Runs the async test function `$test(topology)` once per [`Topology`], as the tests
/// `$test::server`, `$test::cluster` and `$test::sentinel` (with `#[tokio::test]`, or the test
/// attribute given).
///
/// ```text
/// async fn admits_the_quota(topology: Topology) {
///     let Some(redis) = TestRedis::start(topology) else { return };
///     // ...
/// }
/// tollgate_testkit::each_topology!(admits_the_quota);
/// tollgate_testkit::each_topology!(admits_the_quota, #[tokio::test(flavor = "multi_thread")]);
/// ```
#[macro_export]
macro_rules! each_topology {
    ($test:ident) => {
        $crate::each_topology!($test, #[tokio::test]);
    };
    ($test:ident, #[$attribute:meta]) => {
        mod $test {
            #[$attribute]
            async fn server() {
                super::$test($crate::Topology::Server).await;
            }
            #[$attribute]
            async fn cluster() {
                super::$test($crate::Topology::Cluster).await;
            }
            #[$attribute]
            async fn sentinel() {
                super::$test($crate::Topology::Sentinel).await;
            }
        }
    };
}

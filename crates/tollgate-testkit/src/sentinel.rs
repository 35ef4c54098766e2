//! [`RedisSentinel`]: a master watched by real Redis Sentinels.

use std::{io, time::Duration};

use crate::{
    process::{Node, command, wait_for},
    reply::Reply,
};

/// The name the Sentinels watch the master under.
pub const MASTER_NAME: &str = "tollgate";

const DATA: [&str; 4] = ["--save", "", "--appendonly", "no"];

/// A master (and, for failover tests, one replica) watched by Sentinels on free loopback ports:
/// one Sentinel for plain tests, three with a quorum of two for failover. A master that stops
/// answering for half a second is replaced. Every process is stopped and cleaned up on drop.
#[derive(Debug)]
pub struct RedisSentinel {
    /// The master first, then the replica.
    data: Vec<Node>,
    sentinels: Vec<Node>,
}

impl RedisSentinel {
    /// A master watched by one Sentinel, or `None` (after printing why) when `redis-server` or
    /// `redis-cli` is not installed and `TOLLGATE_REQUIRE_REDIS` is not `1`.
    ///
    /// # Panics
    ///
    /// When the binaries are missing and required, or the Sentinel does not see the master.
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// A master and a replica watched by three Sentinels, for failover tests.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn with_replica() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(replica: bool) -> Option<Self> {
        if !crate::process::installed() {
            return None;
        }
        let master = Node::start("sentinel-master", &DATA).expect("the master starts");
        let mut data = vec![master];
        if replica {
            let of = data[0].port.to_string();
            let mut args = DATA.to_vec();
            args.extend(["--replicaof", "127.0.0.1", &of]);
            data.push(Node::start("sentinel-replica", &args).expect("the replica starts"));
        }
        let (count, quorum) = if replica { (3, 2) } else { (1, 1) };
        let sentinels = (0..count)
            .map(|_| {
                // A Sentinel rewrites its own configuration file, so each has one in its directory.
                let node = Node::start("sentinel", &["{dir}/sentinel.conf", "--sentinel"]);
                node.expect("a Sentinel starts")
            })
            .collect::<Vec<_>>();
        let sentinel = Self { data, sentinels };
        for node in &sentinel.sentinels {
            let port = sentinel.data[0].port;
            for line in [
                format!("MONITOR {MASTER_NAME} 127.0.0.1 {port} {quorum}"),
                format!("SET {MASTER_NAME} down-after-milliseconds 500"),
                format!("SET {MASTER_NAME} failover-timeout 2000"),
            ] {
                let mut args = vec!["SENTINEL"];
                args.extend(line.split(' '));
                let reply = node.command(&args).expect("the Sentinel answers");
                assert_eq!(reply, Reply::Status("OK".into()), "SENTINEL {line}");
            }
        }
        sentinel.wait_watching(count);
        Some(sentinel)
    }

    /// Waits until each Sentinel knows the master, its replica and the other Sentinels.
    fn wait_watching(&self, sentinels: usize) {
        let replicas = self.data.len() - 1;
        wait_for(
            "the Sentinels see everything",
            Duration::from_secs(30),
            || {
                self.sentinels.iter().all(|node| {
                    let count = |what: &str| match node.command(&["SENTINEL", what, MASTER_NAME]) {
                        Ok(Reply::Array(items)) => items.len(),
                        _ => usize::MAX,
                    };
                    count("replicas") == replicas && count("sentinels") == sentinels - 1
                })
            },
        );
    }

    /// The Sentinels' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::url).collect()
    }

    /// The port of the master the Sentinels name now.
    ///
    /// # Panics
    ///
    /// When no Sentinel answers.
    pub fn master_port(&self) -> u16 {
        for node in &self.sentinels {
            let reply = node.command(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
            if let Ok(Reply::Array(parts)) = reply
                && let Some(Reply::Bulk(port)) = parts.get(1)
            {
                return String::from_utf8_lossy(port).parse().expect("a port");
            }
        }
        panic!("no Sentinel names the master");
    }

    /// Sends one command to the master the Sentinels name; a Redis error reply is
    /// `Ok(Reply::Error)`.
    ///
    /// # Errors
    ///
    /// When the master cannot be reached.
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        command(self.master_port(), args)
    }

    /// Kills the master the Sentinels name now, as a crash would; returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        let node = self.data.iter_mut().find(|n| n.port == port).expect("ours");
        node.kill();
        port
    }

    /// Waits until the Sentinels name a master other than the one on `old` port, and it answers
    /// as a master.
    ///
    /// # Panics
    ///
    /// When that takes more than 30 seconds.
    pub fn wait_for_new_master(&self, old: u16) {
        wait_for(
            "the Sentinels promote the replica",
            Duration::from_secs(30),
            || {
                let port = self.master_port();
                port != old
                    && matches!(command(port, &["ROLE"]), Ok(Reply::Array(role))
                    if role.first() == Some(&Reply::Bulk(b"master".to_vec())))
            },
        );
    }

    /// Kills the master and its replica: Redis is gone (the Sentinels stay).
    pub fn kill(&mut self) {
        for node in &mut self.data {
            node.kill();
        }
    }

    /// Starts the master and its replica again on their ports, with empty memory, and waits
    /// until the master answers.
    ///
    /// # Panics
    ///
    /// When they do not start.
    pub fn restart(&mut self) {
        for node in &mut self.data {
            node.restart().expect("a Redis behind Sentinel restarts");
        }
    }
}

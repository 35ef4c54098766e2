//! [`RedisCluster`]: a real Redis Cluster of `redis-server` processes, joined by
//! `redis-cli --cluster create`.

use std::{io, process::Command, time::Duration};

use crate::{
    process::{Node, query, wait_for},
    reply::Reply,
};

/// A Redis Cluster node's settings: no persistence, and a short node timeout so a killed master's
/// replica takes over within about two seconds.
const NODE: [&str; 12] = [
    "--save",
    "",
    "--appendonly",
    "no",
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "1000",
    "--cluster-replica-validity-factor",
    "0",
];

/// Three masters on free loopback ports (and, with replicas, one replica each), joined into one
/// cluster that covers every slot; every process is stopped and cleaned up on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    replicas: bool,
}

impl RedisCluster {
    /// Starts three masters, or returns `None` (after printing why) when `redis-server` or
    /// `redis-cli` is not installed and `TOLLGATE_REQUIRE_REDIS` is not `1`.
    ///
    /// # Panics
    ///
    /// When the binaries are missing and required, or the cluster does not form.
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// Starts three masters and three replicas, one per master, for failover tests.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn with_replicas() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(replicas: bool) -> Option<Self> {
        if !crate::process::installed() {
            return None;
        }
        let count = if replicas { 6 } else { 3 };
        let nodes = (0..count)
            .map(|_| Node::start("cluster", &NODE).expect("a cluster node starts"))
            .collect::<Vec<_>>();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)));
        if replicas {
            create.args(["--cluster-replicas", "1"]);
        }
        let output = create
            .arg("--cluster-yes")
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes, replicas };
        cluster.wait_formed();
        Some(cluster)
    }

    /// Waits until every running node sees every other one and the whole slot space served, and
    /// each master that has a replica sees it in sync.
    fn wait_formed(&self) {
        let running = self.nodes.iter().filter(|n| n.is_running()).count();
        wait_for("the cluster forms", Duration::from_secs(30), || {
            self.nodes.iter().filter(|n| n.is_running()).all(|node| {
                let info = text(node.command(&["CLUSTER", "INFO"]));
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_assigned:16384")
                    && info
                        .lines()
                        .find_map(|l| l.strip_prefix("cluster_known_nodes:"))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .is_some_and(|n| n >= running)
            })
        });
        if self.replicas {
            wait_for("the replicas sync", Duration::from_secs(30), || {
                self.nodes.iter().filter(|n| n.is_running()).all(|node| {
                    let info = text(node.command(&["INFO", "replication"]));
                    info.contains("role:master") && info.contains("connected_slaves:1")
                        || info.contains("role:slave") && info.contains("master_link_status:up")
                })
            });
        }
    }

    /// Every node's URL; any of them finds the rest.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// Sends one command through redis-rs's blocking cluster client, which routes it by its key
    /// (and sends keyless ones such as `DBSIZE`, `KEYS` or `SCRIPT FLUSH` to every master); a
    /// Redis error reply is `Ok(Reply::Error)`.
    ///
    /// # Errors
    ///
    /// When the cluster cannot be reached.
    pub fn command(&self, args: &[&str]) -> io::Result<Reply> {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(Node::url)
            .collect();
        let client = redis::cluster::ClusterClient::builder(urls)
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5))
            .build()
            .map_err(io::Error::other)?;
        let mut connection = client.get_connection().map_err(io::Error::other)?;
        query(&mut connection, args)
    }

    /// Sends one command to node `index` alone (`WAIT`, `INFO`, ...).
    ///
    /// # Errors
    ///
    /// When the node cannot be reached.
    pub fn node_command(&self, index: usize, args: &[&str]) -> io::Result<Reply> {
        self.nodes[index].command(args)
    }

    /// The node (an index into [`urls`](Self::urls)) serving `key`'s slot as master now.
    ///
    /// # Panics
    ///
    /// When no running node answers.
    pub fn master_of(&self, key: &str) -> usize {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a node runs");
        let Ok(Reply::Integer(slot)) = node.command(&["CLUSTER", "KEYSLOT", key]) else {
            panic!("CLUSTER KEYSLOT answers");
        };
        self.master_of_slot(slot)
    }

    fn master_of_slot(&self, slot: i64) -> usize {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .expect("a node runs");
        let port = slot_map(node)
            .expect("CLUSTER SLOTS answers")
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| port)
            .unwrap_or_else(|| panic!("slot {slot} is served by nobody"));
        self.nodes
            .iter()
            .position(|n| i64::from(n.port) == port)
            .expect("a node of this cluster")
    }

    /// Keys named `{prefix}{n}`, one for each master, each served by a different master.
    pub fn keys_on_every_master(&self, prefix: &str) -> Vec<String> {
        let mut found: Vec<(usize, String)> = Vec::new();
        for n in 0.. {
            let key = format!("{prefix}{n}");
            let master = self.master_of(&key);
            if !found.iter().any(|(m, _)| *m == master) {
                found.push((master, key));
            }
            if found.len() == 3 {
                break;
            }
        }
        found.into_iter().map(|(_, key)| key).collect()
    }

    /// Kills node `index` as a crash would (SIGKILL).
    pub fn kill_node(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Waits until a replica has taken over every slot of the killed master `index` and the
    /// cluster serves every slot again.
    ///
    /// # Panics
    ///
    /// When that takes more than 30 seconds.
    pub fn wait_for_failover(&self, index: usize) {
        wait_for("a replica takes over", Duration::from_secs(30), || {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| *i != index && n.is_running())
                .all(|(_, node)| {
                    let info = text(node.command(&["CLUSTER", "INFO"]));
                    let killed = i64::from(self.nodes[index].port);
                    info.contains("cluster_state:ok")
                        && slot_map(node)
                            .is_some_and(|map| map.iter().all(|(_, _, master)| *master != killed))
                })
        });
    }

    /// Kills every node: Redis is gone.
    pub fn kill(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Starts every node again on its port, with empty memory but its cluster configuration, and
    /// waits until the cluster serves every slot.
    ///
    /// # Panics
    ///
    /// When it does not form again.
    pub fn restart(&mut self) {
        for node in &mut self.nodes {
            node.restart().expect("a cluster node restarts");
        }
        self.wait_formed();
    }
}

/// A reply as text, for looking into `INFO`-style answers; an unreachable node is empty.
fn text(reply: io::Result<Reply>) -> String {
    match reply {
        Ok(Reply::Bulk(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(other) => format!("{other:?}"),
        Err(_) => String::new(),
    }
}

/// The slot ranges and the port of the master serving each, as `node` sees them.
fn slot_map(node: &Node) -> Option<Vec<(i64, i64, i64)>> {
    let Ok(Reply::Array(ranges)) = node.command(&["CLUSTER", "SLOTS"]) else {
        return None;
    };
    let mut map = Vec::new();
    for range in ranges {
        let Reply::Array(parts) = range else {
            return None;
        };
        let [
            Reply::Integer(start),
            Reply::Integer(end),
            Reply::Array(master),
            ..,
        ] = parts.as_slice()
        else {
            return None;
        };
        let Reply::Integer(port) = master.get(1)? else {
            return None;
        };
        map.push((*start, *end, *port));
    }
    Some(map)
}

//! The fixtures themselves: each starts real processes, serves commands, and leaves nothing
//! behind when dropped.

use std::net::TcpStream;

use tollgate_testkit::{RedisCluster, RedisSentinel, Reply, TestRedis, Topology};

fn listening(url: &str) -> bool {
    let address = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    TcpStream::connect(address).is_ok()
}

#[test]
fn every_topology_serves_commands_and_is_gone_when_dropped() {
    for topology in [Topology::Server, Topology::Cluster, Topology::Sentinel] {
        let Some(redis) = TestRedis::start(topology) else {
            return;
        };
        for n in 0..20 {
            let key = format!("key{n}");
            assert_eq!(
                redis.command(&["SET", &key, "v"]).unwrap(),
                Reply::Status("OK".into())
            );
        }
        assert_eq!(
            redis.command(&["DBSIZE"]).unwrap(),
            Reply::Integer(20),
            "{topology:?}"
        );
        let urls = match &redis {
            TestRedis::Server(server) => vec![server.url()],
            TestRedis::Cluster(cluster) => cluster.urls(),
            TestRedis::Sentinel(sentinel) => sentinel.urls(),
        };
        assert!(urls.iter().all(|url| listening(url)));
        drop(redis);
        assert!(
            urls.iter().all(|url| !listening(url)),
            "{topology:?} left a process"
        );
    }
}

#[test]
fn a_cluster_spreads_keys_over_three_masters_and_a_replica_takes_over_a_killed_one() {
    let Some(mut cluster) = RedisCluster::with_replicas() else {
        return;
    };
    let keys = cluster.keys_on_every_master("k");
    let mut masters: Vec<usize> = keys.iter().map(|key| cluster.master_of(key)).collect();
    masters.dedup();
    assert_eq!(masters.len(), 3);
    let killed = cluster.master_of(&keys[0]);
    cluster.kill_node(killed);
    cluster.wait_for_failover(killed);
    assert_ne!(cluster.master_of(&keys[0]), killed);
}

#[test]
fn sentinel_promotes_the_replica_of_a_killed_master() {
    let Some(mut sentinel) = RedisSentinel::with_replica() else {
        return;
    };
    let old = sentinel.kill_master();
    sentinel.wait_for_new_master(old);
    assert_ne!(sentinel.master_port(), old);
}

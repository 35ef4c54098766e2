//! Separate processes sharing one Redis: four test processes hammer keys at once and, together,
//! admit exactly the quota, on one server, a cluster (keys on every master) and Sentinel.
#![cfg(feature = "redis")]

mod redis_support;

use std::process::Command;

use redis_support::*;
use tollgate_core::redis::{RedisTarget, SentinelTarget};
use tollgate_ratelimit::{OnRedisFailure, RedisRateLimiter, Tier};
use tollgate_testkit::{RedisCluster, TestRedis, Topology};

const CHILD_TARGET: &str = "TOLLGATE_TEST_HAMMER_TARGET";
const CHILD_KEYS: &str = "TOLLGATE_TEST_HAMMER_KEYS";

/// The Redis a child process connects to, as one environment variable.
fn encode(redis: &TestRedis) -> String {
    match redis.target() {
        RedisTarget::Server(url) => format!("server {url}"),
        RedisTarget::Cluster(nodes) => format!("cluster {}", nodes.join(",")),
        RedisTarget::Sentinel(sentinel) => format!("sentinel {}", sentinel.sentinels.join(",")),
        other => panic!("{other:?}"),
    }
}

fn decode(text: &str) -> RedisTarget {
    let (kind, urls) = text.split_once(' ').unwrap();
    let urls = urls.split(',').map(str::to_owned);
    match kind {
        "server" => RedisTarget::Server(urls.into_iter().next().unwrap()),
        "cluster" => RedisTarget::cluster(urls),
        _ => RedisTarget::Sentinel(SentinelTarget::new(tollgate_testkit::MASTER_NAME, urls)),
    }
}

/// Run by `four_processes_admit_exactly_the_quota`, in a child process: hammers every key at
/// once and reports what each admitted.
#[test]
#[ignore = "a child process of four_processes_admit_exactly_the_quota"]
fn hammer_in_a_child_process() {
    let target = decode(&std::env::var(CHILD_TARGET).expect("run by the parent test"));
    let keys = std::env::var(CHILD_KEYS).expect("run by the parent test");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limiter = RedisRateLimiter::builder(target)
            .scope("tenant", quota([Tier::requests(200, HOUR)]))
            .timeout(PATIENT)
            .on_failure(OnRedisFailure::FailClosed)
            .build()
            .unwrap();
        let counts = join_spawned(keys.split(',').map(|key| {
            let limiter = limiter.clone();
            let key = key.to_owned();
            async move { (key.clone(), hammer(&limiter, &key, 16, 20).await) }
        }))
        .await;
        for (key, admitted) in counts {
            println!("admitted {key}={admitted}");
        }
    });
}

/// Runs every future on its own task, at once, and collects their outputs in order.
async fn join_spawned<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// Four processes, each with 16 callers per key making 20 attempts, on a quota of 200 per key:
/// exactly 200 of each key's 1,280 attempts are admitted, whichever master holds the key.
fn four_processes_admit_exactly_the_quota(redis: &TestRedis, keys: &[String]) {
    // All four start before any is waited for, so they hammer at the same time.
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "hammer_in_a_child_process",
                    "--nocapture",
                ])
                .env(CHILD_TARGET, encode(redis))
                .env(CHILD_KEYS, keys.join(","))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the test binary runs")
        })
        .collect();
    let mut totals = vec![0_u64; keys.len()];
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "child failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for (i, key) in keys.iter().enumerate() {
            let admitted: u64 = stdout
                .lines()
                .find_map(|line| line.strip_prefix(&format!("admitted {key}=")))
                .expect("the child reports")
                .trim()
                .parse()
                .unwrap();
            totals[i] += admitted;
        }
    }
    assert_eq!(
        totals,
        vec![200; keys.len()],
        "4 processes × 320 attempts per key on a quota of 200"
    );
}

#[test]
fn four_processes_hammering_one_key_admit_exactly_the_quota() {
    for topology in [Topology::Server, Topology::Cluster, Topology::Sentinel] {
        let Some(redis) = TestRedis::start(topology) else {
            return;
        };
        four_processes_admit_exactly_the_quota(&redis, &["shared".to_owned()]);
    }
}

#[test]
fn four_processes_on_a_three_master_cluster_admit_exactly_the_quota_of_keys_on_every_master() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    // The limiter names a key `tollgate:rl:{tenant:<key>}`; pick tenants whose slots are on
    // three different masters.
    let mut tenants: Vec<(usize, String)> = Vec::new();
    for n in 0.. {
        let tenant = format!("t{n}");
        let master = cluster.master_of(&format!("tollgate:rl:{{tenant:{tenant}}}"));
        if !tenants.iter().any(|(m, _)| *m == master) {
            tenants.push((master, tenant));
        }
        if tenants.len() == 3 {
            break;
        }
    }
    let keys: Vec<String> = tenants.into_iter().map(|(_, tenant)| tenant).collect();
    four_processes_admit_exactly_the_quota(&TestRedis::Cluster(cluster), &keys);
}

//! The Redis rate limiter on a three-master Redis Cluster beside one Redis server, in the same
//! run, both started by the bench on free ports on this machine.
//!
//! - `redis_topology/<variant>/64`: decisions per second with 64 concurrent callers, each on its
//!   own tenant key; the 64 keys spread over all three masters of the cluster.
//!   - `server`: tollgate on one server;
//!   - `cluster`: tollgate on the cluster (redis-rs's cluster client, through `RedisConnection`);
//!   - `cluster_raw_client`: the same Lua script by `EVALSHA` through redis-rs's cluster client
//!     alone, with the same keys and arguments: what tollgate adds on a cluster;
//!   - `cluster_raw_ours`: the same raw call through tollgate's `RedisConnection`: what the
//!     connection (the failover watch) adds over redis-rs's client;
//!   - `cluster_raw_direct`: the same script by `EVALSHA` on a direct connection to the master
//!     that holds each key, the routing done beforehand: what the cluster client costs.
//!
//! Every process shares this machine's cores, so the cluster's three masters cannot use more
//! CPU than the single server could take from the client: the scaling measured here is a floor.
//!
//! Run: `cargo bench -p tollgate-benches --bench redis_cluster` (needs `redis-server` and
//! `redis-cli` on the PATH).

use std::{sync::Arc, time::Duration};

use criterion::{BenchmarkId, Criterion, Throughput};
use redis::aio::ConnectionLike;
use tollgate::{
    ratelimit::{Amounts, OnRedisFailure, Quota, RedisRateLimiter, Tier},
    redis::{RedisConnection, RedisTarget},
};
use tollgate_testkit::{RedisCluster, RedisServer};

/// A billion an hour: never refused during a run.
const LIMIT: u64 = 1_000_000_000;
const HOUR: Duration = Duration::from_secs(3_600);
const CALLERS: u64 = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn limiter(target: RedisTarget) -> RedisRateLimiter {
    RedisRateLimiter::builder(target)
        .scope(
            "tenant",
            Quota::new([Tier::requests(LIMIT, HOUR)]).expect("valid"),
        )
        .timeout(Duration::from_secs(5))
        .on_failure(OnRedisFailure::FailClosed)
        .build()
        .expect("builds")
}

/// Runs `total` calls spread over 64 tasks, caller `i` calling `one(i)`; returns the wall time.
async fn spread<F, Fut>(total: u64, one: F) -> Duration
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|i| {
            let one = one.clone();
            let share = total / CALLERS + u64::from(i < total % CALLERS);
            tokio::spawn(async move {
                for _ in 0..share {
                    one(i as usize).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    started.elapsed()
}

/// The script's raw call for one request of the bench's quota on `key`.
fn evalsha(script: &redis::Script, key: &str) -> redis::Cmd {
    let quota = Quota::new([Tier::requests(LIMIT, HOUR)]).expect("valid");
    let tier = &quota.tiers()[0];
    let interval = (tier.period().as_nanos() / u128::from(tier.limit())) as u64;
    let window = interval * tier.burst();
    let mut command = redis::cmd("EVALSHA");
    command
        .arg(script.get_hash())
        .arg(1)
        .arg(key)
        .arg("a")
        .arg(0)
        .arg(1)
        .arg(format!("r:{interval}:{window}"))
        .arg(interval)
        .arg(window)
        // A rolling tier: no calendar period.
        .arg(0);
    command
}

/// One call per key, each on `connection`.
fn every_key<C: Clone>(
    connection: &C,
    keys: &[String],
    script: &redis::Script,
) -> Arc<Vec<(C, redis::Cmd)>> {
    Arc::new(
        keys.iter()
            .map(|key| (connection.clone(), evalsha(script, key)))
            .collect(),
    )
}

/// Caller `i` sends the `i`th command on the `i`th connection; each must answer "admitted".
fn raw<C: ConnectionLike + Clone + Send + Sync + 'static>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    calls: Arc<Vec<(C, redis::Cmd)>>,
) {
    group.bench_function(BenchmarkId::new(name, CALLERS), |b| {
        b.iter_custom(|iters| {
            let calls = calls.clone();
            runtime.block_on(spread(iters, move |i| {
                let calls = calls.clone();
                async move {
                    let (connection, command) = &calls[i];
                    let reply = connection
                        .clone()
                        .req_packed_command(command)
                        .await
                        .expect("answers");
                    assert_eq!(reply, redis::Value::Array(vec![redis::Value::Int(1)]));
                }
            }))
        })
    });
}

fn main() {
    let (Some(server), Some(cluster)) = (RedisServer::start(), RedisCluster::start()) else {
        println!("skipped: redis-server or redis-cli is not installed");
        return;
    };
    let runtime = runtime();
    let tenants: Arc<Vec<String>> = Arc::new((0..CALLERS).map(|i| format!("t{i}")).collect());
    let keys: Vec<String> = tenants
        .iter()
        .map(|t| format!("tollgate:rl:{{tenant:{t}}}"))
        .collect();
    let mut per_master = [0; 6];
    for key in &keys {
        per_master[cluster.master_of(key)] += 1;
    }
    println!(
        "the 64 keys on the cluster's masters: {:?}",
        &per_master[..3]
    );

    let script = Arc::new(redis::Script::new(RedisRateLimiter::script()));
    let (on_server, on_cluster, cluster_client, direct) = runtime.block_on(async {
        let cluster_client = redis::cluster::ClusterClient::new(cluster.urls())
            .expect("nodes")
            .get_async_connection()
            .await
            .expect("connects");
        // One direct connection per master, each key's found beforehand.
        let mut managers = Vec::new();
        for url in cluster.urls() {
            let client = redis::Client::open(url).expect("url");
            managers.push(
                redis::aio::ConnectionManager::new(client)
                    .await
                    .expect("connects"),
            );
        }
        let direct: Vec<(redis::aio::ConnectionManager, redis::Cmd)> = keys
            .iter()
            .map(|key| {
                (
                    managers[cluster.master_of(key)].clone(),
                    evalsha(&script, key),
                )
            })
            .collect();
        // Each master has the script before the raw calls.
        for manager in &mut managers {
            let _: String = script
                .prepare_invoke()
                .load_async(manager)
                .await
                .expect("loads");
        }
        (
            limiter(RedisTarget::Server(server.url())),
            limiter(RedisTarget::Cluster(cluster.urls())),
            cluster_client,
            Arc::new(direct),
        )
    });

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut group = criterion.benchmark_group("redis_topology");
    group.throughput(Throughput::Elements(1));
    for (name, limiter) in [("server", &on_server), ("cluster", &on_cluster)] {
        group.bench_function(BenchmarkId::new(name, CALLERS), |b| {
            b.iter_custom(|iters| {
                let (limiter, tenants) = (limiter.clone(), tenants.clone());
                runtime.block_on(spread(iters, move |i| {
                    let (limiter, tenants) = (limiter.clone(), tenants.clone());
                    async move {
                        let tenant = limiter.scope("tenant").expect("scope");
                        limiter
                            .check_and_consume(&[(tenant, &tenants[i])], Amounts::requests(1))
                            .await
                            .expect("admitted");
                    }
                }))
            })
        });
    }
    let ours = runtime.block_on(async {
        RedisConnection::open(
            &RedisTarget::Cluster(cluster.urls()),
            Duration::from_secs(1),
            Duration::from_millis(100),
        )
        .expect("opens")
    });
    raw(
        &mut group,
        &runtime,
        "cluster_raw_client",
        every_key(&cluster_client, &keys, &script),
    );
    raw(
        &mut group,
        &runtime,
        "cluster_raw_ours",
        every_key(&ours, &keys, &script),
    );
    raw(&mut group, &runtime, "cluster_raw_direct", direct);
    group.finish();
    criterion.final_summary();
}

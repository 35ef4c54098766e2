//! The one `redis` section: its defaults, its refusals, each named by its path, and the
//! environment's override.

use std::time::Duration;

use tollgate_core::redis::{LeaseConfig, OnFailureConfig, REDIS_URL_VAR, RedisConfig};

fn read(json: &str) -> Result<RedisConfig, serde_json::Error> {
    serde_json::from_str(json)
}

#[test]
fn a_section_naming_only_a_server_takes_every_default() {
    let section = read(r#"{ "url": "redis://127.0.0.1:6379/" }"#).unwrap();
    assert_eq!(section, RedisConfig::url("redis://127.0.0.1:6379/"));
    assert_eq!(section.prefix, "tollgate");
    assert_eq!(
        (section.limiter_prefix(), section.cache_prefix()),
        ("tollgate:rl".to_owned(), "tollgate:cache".to_owned())
    );
    assert_eq!(section.limiter_timeout, Duration::from_millis(5));
    assert_eq!(section.cache_timeout, Duration::from_millis(50));
    assert_eq!(section.on_failure, OnFailureConfig::Local);
    assert_eq!(section.local_share, 0.5);
    assert_eq!(section.failure_threshold, 3);
    assert_eq!(section.probe_interval, Duration::from_millis(500));
    assert_eq!(section.cache_max_value_bytes, 512 * 1024);
    assert!(!section.cache_compress && section.lease.is_none());
    assert!(section.check().is_empty(), "{:?}", section.check());
}

#[test]
fn every_setting_reads_in_one_section() {
    let section = read(
        r#"{
            "cluster": { "nodes": ["redis://10.0.0.1:7000/"] },
            "prefix": "app", "hash_tag_scope": "tenant",
            "on_failure": "fail_closed", "local_share": 0.25, "failure_threshold": 5,
            "probe_interval": "2s", "limiter_timeout": "20ms", "lease": { "batch": 10, "ttl": "1s" },
            "cache_timeout": "80ms", "cache_max_value_bytes": 1024, "cache_compress": true
        }"#,
    )
    .unwrap();
    assert_eq!(section.limiter_prefix(), "app:rl");
    assert_eq!(section.cache_prefix(), "app:cache");
    assert_eq!(section.on_failure, OnFailureConfig::FailClosed);
    assert_eq!(
        section.lease,
        Some(LeaseConfig {
            batch: 10,
            ttl: Duration::from_secs(1)
        })
    );
    assert_eq!(section.limiter_timeout, Duration::from_millis(20));
    assert_eq!(section.cache_timeout, Duration::from_millis(80));
    assert!(section.check().is_empty(), "{:?}", section.check());
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    // The rate limiter's old name for its timeout is not a field of the one section.
    let error = read(r#"{ "url": "redis://h/", "timeout": "5ms" }"#).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `timeout`"),
        "{error}"
    );
}

#[test]
fn check_names_every_mistake_by_its_path() {
    let section = RedisConfig {
        prefix: "a{b}".into(),
        local_share: 1.5,
        failure_threshold: 0,
        probe_interval: Duration::ZERO,
        limiter_timeout: Duration::ZERO,
        cache_timeout: Duration::ZERO,
        cache_max_value_bytes: 0,
        lease: Some(LeaseConfig {
            batch: 0,
            ttl: Duration::ZERO,
        }),
        ..RedisConfig::url("redis://127.0.0.1/")
    };
    let paths: Vec<String> = section
        .check()
        .into_iter()
        .map(|e| e.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "redis.prefix",
            "redis.local_share",
            "redis.failure_threshold",
            "redis.cache_max_value_bytes",
            "redis.probe_interval",
            "redis.limiter_timeout",
            "redis.cache_timeout",
            "redis.lease.batch",
            "redis.lease.ttl",
        ]
    );
}

#[cfg(feature = "redis")]
#[test]
fn check_refuses_a_section_that_names_no_redis_or_two() {
    let none = RedisConfig::default();
    assert_eq!(none.check()[0].path(), "redis");
    let two = RedisConfig {
        cluster: Some(tollgate_core::redis::ClusterConfig {
            nodes: vec!["redis://h:7000/".into()],
        }),
        ..RedisConfig::url("redis://h/")
    };
    assert!(two.check()[0].to_string().contains("only one of"));
    let scheme = RedisConfig::url("http://h/");
    assert_eq!(scheme.check()[0].path(), "redis.url");
}

#[test]
fn the_environment_replaces_whichever_redis_the_section_names() {
    let section = RedisConfig {
        cluster: Some(tollgate_core::redis::ClusterConfig {
            nodes: vec!["redis://h:7000/".into()],
        }),
        ..RedisConfig::default()
    };
    let replaced = section
        .clone()
        .with_env_from(|name| (name == REDIS_URL_VAR).then(|| "redis://env-host:6380/".to_owned()));
    assert_eq!(replaced.url.as_deref(), Some("redis://env-host:6380/"));
    assert!(replaced.cluster.is_none() && replaced.sentinel.is_none());
    assert_eq!(section.clone().with_env_from(|_| None), section);
}

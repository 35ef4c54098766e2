//! Keys and teams kept in the database, served by two real gateway processes on one database (a
//! SQLite file, and a real PostgreSQL): a key made, revoked or rotated on the records answers,
//! or stops answering, on both without a reload; a key's limits from its record hold; and each
//! billed call reaches the spend ledger. The CLI works on the same records.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tollgate_control::{Database, DatabaseConfig, GroupBy, NewKey, NewTeam};
use tollgate_testkit::{TestDatabase, TestPostgres};

/// How long a change may take to reach a process here: the gateway reads the records every
/// half second; CI's two busy cores get far more.
const PATIENCE: Duration = Duration::from_secs(30);

/// A fresh SQLite file, and a fresh PostgreSQL when one is installed (required in CI).
fn homes() -> Vec<TestDatabase> {
    TestDatabase::each("gateway-records")
}

/// The records at `url`, with the team `search`.
async fn search_team(url: String) -> Database {
    let records = Database::open(&DatabaseConfig::url(url)).await.unwrap();
    records
        .create_team("ops", NewTeam::named("search"))
        .await
        .unwrap();
    records
}

/// The records of `home` with the team `search`, and a configuration on them calling `upstream`.
async fn with_team(home: &TestDatabase, upstream: &Upstream) -> (Database, String) {
    let records = search_team(home.url()).await;
    let yaml = config(
        upstream,
        &format!("database: {{ url: \"{}\" }}", home.url()),
    );
    (records, yaml)
}

async fn status(gateway: &GatewayProcess, key: &str) -> u16 {
    chat(gateway, key, &ask("hi")).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_revoked_and_rotated_on_the_records_reach_every_process() {
    for home in homes() {
        let upstream = Upstream::start().await;
        let (records, yaml) = with_team(&home, &upstream).await;
        let (a, b) = (
            GatewayProcess::start(&yaml).await,
            GatewayProcess::start(&yaml).await,
        );

        // Made on the records: answers on both processes, with no reload.
        let made = records
            .create_key("ops", NewKey::new("search-backend", "search"))
            .await
            .unwrap();
        for gateway in [&a, &b] {
            assert!(
                comes_to(gateway, &made.key, 200, PATIENCE).await,
                "{}",
                home.url()
            );
        }
        // A key the file lists still works beside them.
        assert_eq!(status(&a, ALICE).await, 200);
        // When it was last used reaches the records, in a batch.
        let id = made.record.id.clone();
        let used = || {
            let (records, id) = (&records, &id);
            async move {
                records
                    .key(id)
                    .await
                    .unwrap()
                    .unwrap()
                    .last_used_at
                    .is_some()
            }
        };
        assert!(until(PATIENCE, used).await);

        // Revoked: refused on both.
        records.revoke_key("ops", &made.record.id).await.unwrap();
        for gateway in [&b, &a] {
            assert!(comes_to(gateway, &made.key, 401, PATIENCE).await);
        }

        // Rotated with a grace of fifteen seconds: the new secret works once read, the old one
        // through the grace on both processes, then gets 401.
        let second = records
            .create_key("ops", NewKey::new("batch", "search"))
            .await
            .unwrap();
        assert!(comes_to(&a, &second.key, 200, PATIENCE).await);
        let rotated = records
            .rotate_key("ops", &second.record.id, Duration::from_secs(15))
            .await
            .unwrap()
            .unwrap();
        assert!(comes_to(&b, &rotated.key, 200, PATIENCE).await);
        assert!(comes_to(&a, &rotated.key, 200, PATIENCE).await);
        assert_eq!(
            (status(&a, &second.key).await, status(&b, &second.key).await),
            (200, 200)
        );
        assert!(comes_to(&b, &second.key, 401, PATIENCE).await);
        assert!(comes_to(&a, &second.key, 401, PATIENCE).await);
        assert_eq!(status(&b, &rotated.key).await, 200);

        // A key that never existed is refused as before.
        assert_eq!(status(&a, "tg-nobody").await, 401);
        drop((a, b));
        records.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_limits_hold_and_its_calls_reach_the_spend_ledger() {
    for home in homes() {
        let upstream = Upstream::start().await;
        let (records, yaml) = with_team(&home, &upstream).await;
        let gateway = GatewayProcess::start(&yaml).await;
        let mut limited = NewKey::new("two-a-minute", "search");
        limited.limits = Some(serde_json::from_value(json!({ "per_minute": 2 })).unwrap());
        let made = records.create_key("ops", limited).await.unwrap();
        let free = records
            .create_key("ops", NewKey::new("free", "search"))
            .await
            .unwrap();
        assert!(comes_to(&gateway, &free.key, 200, PATIENCE).await);
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(status(&gateway, &made.key).await);
        }
        assert_eq!(seen, [200, 200, 429]);
        // Another key of the same team is not held by that key's limits.
        assert_eq!(status(&gateway, &free.key).await, 200);

        // Two calls answered with the key: two lines in the ledger under its id, and the
        // team's two keys' four calls under the team. The scripted upstream reports 10 prompt
        // and 5 answer tokens a call, at $1 and $2 per million.
        let ledger_has = |group_by, name: String, calls| {
            let records = &records;
            async move {
                let report = records.spend(group_by, None, None).await.unwrap();
                report.groups.get(&name).is_some_and(|t| t.calls == calls)
            }
        };
        assert!(
            until(PATIENCE, || ledger_has(
                GroupBy::Key,
                made.record.id.clone(),
                2
            ))
            .await
        );
        assert!(until(PATIENCE, || ledger_has(GroupBy::Team, "search".into(), 4)).await);
        let by_key = records.spend(GroupBy::Key, None, None).await.unwrap();
        let line = &by_key.groups[&made.record.id];
        assert_eq!(
            (line.input_tokens, line.output_tokens, line.cost_micros),
            (20, 10, 2 * (10 + 2 * 5))
        );
        drop(gateway);
        records.close().await;
    }
}

/// Runs `tollgate` with `args`; its exit code, standard output and standard error.
fn tollgate(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_the_records_a_running_gateway_serves() {
    for home in homes() {
        let upstream = Upstream::start().await;
        let yaml = config(
            &upstream,
            &format!("database: {{ url: \"{}\" }}", home.url()),
        );
        let gateway = GatewayProcess::start(&yaml).await;
        let file = gateway.config.display().to_string();
        let run = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--config", &file]);
            tollgate(&all)
        };

        let (code, _, err) = run(&[
            "teams",
            "create",
            "search",
            "--limits",
            r#"{"per_minute": 100}"#,
        ]);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = run(&[
            "keys", "create", "--name", "nightly", "--team", "search", "--role", "default",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("shown this once"));
        let made: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (secret, id) = (made["key"].as_str().unwrap(), made["id"].as_str().unwrap());
        assert!(comes_to(&gateway, secret, 200, PATIENCE).await);

        let (code, out, _) = run(&["keys", "list"]);
        assert_eq!(code, 0);
        assert!(out.contains(id) && !out.contains(secret) && !out.contains("sha256:"));
        let (code, out, _) = run(&["spend", "--group-by", "team", "--csv"]);
        assert_eq!(code, 0);
        assert!(out.starts_with("team,calls,"), "{out}");

        let (code, _, _) = run(&["keys", "revoke", id]);
        assert_eq!(code, 0);
        assert!(comes_to(&gateway, secret, 401, PATIENCE).await);
        // The audit log says the CLI did it.
        let records = Database::open(&DatabaseConfig::url(home.url()))
            .await
            .unwrap();
        let audit = records.audit(10).await.unwrap();
        assert_eq!(audit[0].action, "key.revoke");
        assert_eq!(audit[0].actor, "cli");
        records.close().await;

        // Mistakes are said, and fail.
        let (code, _, err) = run(&["keys", "revoke", "key_ffffffffffffffff"]);
        assert_eq!((code, err.trim()), (1, "no key \"key_ffffffffffffffff\""));
        let (code, _, err) = run(&["spend", "--group-by", "colour"]);
        assert_eq!(code, 1);
        assert!(err.contains("group_by"), "{err}");
    }
}

#[test]
fn the_record_commands_need_a_database_section() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-no-db-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tollgate.yaml");
    std::fs::write(
        &file,
        format!(
            "providers: {{ local: {{ kind: simulated }} }}\nroles: {{ default: {{ provider: local, model: m }} }}\nkeys: {{ a: {{ hash: \"{}\", tenant: t }} }}\n",
            tollgate_gateway::hash_key("tg-a")
        ),
    )
    .unwrap();
    let (code, _, err) = tollgate(&["keys", "list", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("no `database` section"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_under_load_fails_no_call_and_the_ledger_catches_up() {
    let Some(mut postgres) = TestPostgres::start() else {
        return;
    };
    let upstream = Upstream::start().await;
    let records = search_team(postgres.url()).await;
    let made = records
        .create_key("ops", NewKey::new("search-backend", "search"))
        .await
        .unwrap();
    records.close().await;
    let gateway = GatewayProcess::start(&config(
        &upstream,
        &format!("database: {{ url: \"{}\", timeout: 2s }}", postgres.url()),
    ))
    .await;
    assert!(comes_to(&gateway, &made.key, 200, PATIENCE).await);

    // Calls all along: before, while and after the database is down.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(status(&gateway, &made.key).await);
    }
    postgres.kill();
    for _ in 0..40 {
        statuses.push(status(&gateway, &made.key).await);
    }
    // Long enough for the gateway to have tried (and failed) to read and write.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..40 {
        statuses.push(status(&gateway, &made.key).await);
    }
    postgres.restart();
    for _ in 0..20 {
        statuses.push(status(&gateway, &made.key).await);
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(gateway.logs().contains("the database does not answer"));

    // Every call is in the ledger once it is back (one more made the key work), or counted as
    // dropped: here, nothing had to be.
    let records = Database::open(&DatabaseConfig::url(postgres.url()))
        .await
        .unwrap();
    let id = made.record.id.clone();
    let in_ledger = || {
        let (records, id) = (&records, &id);
        async move {
            let report = records.spend(GroupBy::Key, None, None).await.unwrap();
            report.groups.get(id).map_or(0, |t| t.calls)
        }
    };
    let first_tries = statuses.len() as u64 + 1;
    assert!(
        until(PATIENCE, || async { in_ledger().await >= first_tries }).await,
        "the ledger has {} of {first_tries} calls",
        in_ledger().await
    );
    let scraped = scrape(&gateway).await;
    assert!(
        scraped.contains("tollgate_ledger_dropped_total 0"),
        "{scraped}"
    );
    records.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_expiry_and_its_limits_hold_to_the_moment_and_across_a_reload() {
    let home = TestDatabase::each("expiry-reload").remove(0);
    let upstream = Upstream::start().await;
    let (records, yaml) = with_team(&home, &upstream).await;
    let mut limited = NewKey::new("two-a-minute", "search");
    limited.limits = Some(serde_json::from_value(json!({ "per_minute": 2 })).unwrap());
    let limited = records.create_key("ops", limited).await.unwrap();
    let gateway = GatewayProcess::start(&yaml).await;

    // Made once the gateway runs, to expire ten seconds on: served once read, then refused from
    // its expiry on, checked at each call rather than at the next read.
    let mut expiring = NewKey::new("short-lived", "search");
    expiring.expires_at = Some(std::time::SystemTime::now() + Duration::from_secs(10));
    let expiring = records.create_key("ops", expiring).await.unwrap();
    assert!(comes_to(&gateway, &expiring.key, 200, Duration::from_secs(10)).await);
    assert!(comes_to(&gateway, &expiring.key, 401, PATIENCE).await);

    // A reload builds a new limiter: the record's limits hold on it from the reload on.
    gateway.reload(&yaml);
    assert!(
        until(PATIENCE, || async {
            gateway.logs().contains("configuration reloaded")
        })
        .await
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(status(&gateway, &limited.key).await);
    }
    assert_eq!(seen, [200, 200, 429]);
    drop(gateway);
    records.close().await;
}

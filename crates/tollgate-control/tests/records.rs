//! Keys, teams, the audit log and the spend ledger, on a SQLite file and on a real PostgreSQL.

use std::time::{Duration, SystemTime};

use serde_json::json;
use tollgate_control::{
    Backend, Database, DatabaseConfig, GroupBy, KeyChange, Ledger, LedgerConfig, NewKey, NewTeam,
    SpendEntry, TeamChange, hash_key,
};
use tollgate_core::{ErrorKind, MicroUsd, Usage};
use tollgate_testkit::{TestDatabase, TestPostgres};

/// A fresh SQLite file, and a fresh PostgreSQL when one is installed (required in CI).
fn homes() -> Vec<TestDatabase> {
    TestDatabase::each("control")
}

async fn open(home: &TestDatabase) -> Database {
    Database::open(&DatabaseConfig::url(home.url()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_from_empty_and_again_change_nothing() {
    for home in homes() {
        let database = open(&home).await;
        database
            .create_team("ops", NewTeam::named("acme"))
            .await
            .unwrap();
        let version = database.records_version().await.unwrap();
        assert_eq!(version, 1);
        database.close().await;
        // Opened again: the migration is not run twice, and nothing is lost.
        let again = open(&home).await;
        again.migrate().await.unwrap();
        assert_eq!(again.records_version().await.unwrap(), version);
        assert_eq!(again.teams().await.unwrap().len(), 1);
        let expected = match home {
            TestDatabase::File(_) => Backend::Sqlite,
            TestDatabase::Server(_) => Backend::Postgres,
        };
        assert_eq!(again.backend(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_the_same_millisecond_are_audited_in_the_order_they_were_made() {
    for home in homes() {
        let database = open(&home).await;
        let names: Vec<String> = (0..40).map(|n| format!("team-{n:02}")).collect();
        for name in &names {
            database
                .create_team("ops", NewTeam::named(name))
                .await
                .unwrap();
        }
        let audited: Vec<String> = database
            .audit(100)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|entry| entry.target)
            .collect();
        assert_eq!(audited, names);
        database.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lives_made_changed_rotated_and_revoked_and_every_change_is_audited() {
    for home in homes() {
        let database = open(&home).await;
        database
            .create_team("ops", NewTeam::named("search"))
            .await
            .unwrap();
        let mut new = NewKey::new("search-backend", "search");
        new.models = vec!["openai/*".into()];
        new.tags = vec!["prod".into()];
        let made = database.create_key("ops", new).await.unwrap();
        let id = made.record.id.clone();
        assert!(id.starts_with("key_") && id.len() == 4 + 16, "{id}");
        assert_eq!(made.record.hash, hash_key(&made.key));
        assert!(made.record.is_live(SystemTime::now()));
        assert_eq!(database.key(&id).await.unwrap().unwrap(), made.record);

        // Its limits and roles change; `null` clears.
        let change: KeyChange = serde_json::from_value(json!({
            "roles": ["default"],
            "limits": { "budgets": [ { "limit": "500", "period": "month" } ] },
            "expires_at": "2099-01-01T00:00:00Z",
        }))
        .unwrap();
        let changed = database
            .update_key("ops", &id, change)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed.roles, Some(vec!["default".to_owned()]));
        assert!(changed.limits.as_ref().unwrap().has_budget());
        assert!(changed.expires_at.is_some());
        let cleared: KeyChange =
            serde_json::from_value(json!({ "roles": null, "expires_at": null })).unwrap();
        let cleared = database
            .update_key("ops", &id, cleared)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((cleared.roles, cleared.expires_at), (None, None));
        assert!(cleared.limits.is_some(), "a field not given stays");

        // Rotated: a new secret, the old one's hash kept for the grace period.
        let rotated = database
            .rotate_key("ops", &id, Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(rotated.key, made.key);
        assert_eq!(rotated.record.hash, hash_key(&rotated.key));
        assert_eq!(
            rotated.record.previous_hash.as_deref(),
            Some(&*made.record.hash)
        );
        let until = rotated.record.previous_until.unwrap();
        let left = until.duration_since(SystemTime::now()).unwrap();
        assert!(
            left > Duration::from_secs(590) && left <= Duration::from_secs(600),
            "{left:?}"
        );

        // Revoked: at once, for good, and the previous secret with it.
        let revoked = database.revoke_key("ops", &id).await.unwrap().unwrap();
        assert!(!revoked.is_live(SystemTime::now()));
        assert_eq!(revoked.previous_hash, None);
        let error = database
            .rotate_key("ops", &id, Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert!(
            database
                .key("key_0000000000000000")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            database
                .revoke_key("ops", "key_none")
                .await
                .unwrap()
                .is_none()
        );

        let actions: Vec<String> = database
            .audit(100)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|entry| format!("{} {} {}", entry.actor, entry.action, entry.target))
            .collect();
        assert_eq!(
            actions,
            [
                "ops team.create search".to_owned(),
                format!("ops key.create {id}"),
                format!("ops key.update {id}"),
                format!("ops key.update {id}"),
                format!("ops key.rotate {id}"),
                format!("ops key.revoke {id}"),
            ]
        );
        assert_eq!(database.records_version().await.unwrap(), 6);

        // The record's JSON, and everything the audit log holds, never carries a secret.
        let shown = serde_json::to_string(&database.keys().await.unwrap()).unwrap();
        let audit = serde_json::to_string(&database.audit(100).await.unwrap()).unwrap();
        for secret in [&made.key, &rotated.key] {
            assert!(!shown.contains(secret.as_str()) && !audit.contains(secret.as_str()));
        }
        assert!(!shown.contains("sha256:"), "no hash is shown either");
        database.close().await;
        if let TestDatabase::File(dir) = &home {
            // The database itself holds only hashes.
            for entry in std::fs::read_dir(dir).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                for secret in [&made.key, &rotated.key] {
                    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_are_refused_with_what_is_wrong() {
    for home in homes() {
        let database = open(&home).await;
        let refused = |error: tollgate_core::LlmError, words: &str| {
            assert_eq!(error.kind(), ErrorKind::InvalidRequest);
            assert!(error.message().contains(words), "{error}");
        };
        refused(
            database
                .create_team("ops", NewTeam::named("a b"))
                .await
                .unwrap_err(),
            "a team's name",
        );
        database
            .create_team("ops", NewTeam::named("acme"))
            .await
            .unwrap();
        refused(
            database
                .create_team("ops", NewTeam::named("acme"))
                .await
                .unwrap_err(),
            "exists",
        );
        refused(
            database
                .create_key("ops", NewKey::new("k", "nobody"))
                .await
                .unwrap_err(),
            "no team \"nobody\"",
        );
        let mut bad_models = NewKey::new("k", "acme");
        bad_models.models = vec!["gpt-4o".into()];
        refused(
            database.create_key("ops", bad_models).await.unwrap_err(),
            "models",
        );
        let mut bad_limits = NewKey::new("k", "acme");
        bad_limits.limits = Some(serde_json::from_value(json!({ "per_minute": 0 })).unwrap());
        refused(
            database.create_key("ops", bad_limits).await.unwrap_err(),
            "limits.per_minute: must be > 0",
        );
        // A team with keys stays; one without goes.
        database
            .create_key("ops", NewKey::new("k", "acme"))
            .await
            .unwrap();
        refused(
            database.delete_team("ops", "acme").await.unwrap_err(),
            "1 key",
        );
        database
            .create_team("ops", NewTeam::named("empty"))
            .await
            .unwrap();
        assert!(database.delete_team("ops", "empty").await.unwrap());
        assert!(!database.delete_team("ops", "empty").await.unwrap());
        let change: TeamChange =
            serde_json::from_value(json!({ "limits": { "cost_per_day": "5" } })).unwrap();
        let team = database
            .update_team("ops", "acme", change)
            .await
            .unwrap()
            .unwrap();
        assert!(team.limits.unwrap().has_budget());
        assert!(
            serde_json::from_value::<NewKey>(json!({ "name": "k", "team": "acme", "key": "tg-x" }))
                .is_err()
        );
        let error = Database::open(&DatabaseConfig::url("mysql://nowhere"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
    }
}

fn entry(day: &str, key: &str, team: &str, model: &str, cost: u64) -> SpendEntry {
    let at: jiff::Timestamp = format!("{day}T12:00:00Z").parse().unwrap();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(at.as_second() as u64);
    let mut usage = Usage::new(100, 20);
    usage.cached_input_tokens = 40;
    usage.cache_write_tokens = 10;
    usage.reasoning_tokens = 5;
    SpendEntry::new(at, key, team, model, "openai", usage, MicroUsd(cost))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_adds_up_to_the_micro_dollar_by_key_team_model_and_day() {
    for home in homes() {
        let database = open(&home).await;
        let ledger = Ledger::start(database.clone(), LedgerConfig::default());
        let mut expected = std::collections::BTreeMap::<(&str, &str), u64>::new();
        for i in 0..1_000_u64 {
            let day = ["2026-11-30", "2026-12-01", "2026-12-02"][(i % 3) as usize];
            let key = ["key_a", "key_b"][(i % 2) as usize];
            let team = if key == "key_a" { "acme" } else { "globex" };
            let model = ["gpt-4o", "gpt-4o-mini", "claude"][(i % 5 % 3) as usize];
            let cost = 1_000 + i * 37;
            *expected.entry((day, key)).or_default() += cost;
            ledger.record(entry(day, key, team, model, cost));
        }
        ledger.flush().await.unwrap();
        assert_eq!(ledger.dropped(), 0);
        let all: u64 = expected.values().sum();
        for group_by in [
            GroupBy::Key,
            GroupBy::Team,
            GroupBy::Model,
            GroupBy::Day,
            GroupBy::Provider,
        ] {
            let report = database.spend(group_by, None, None).await.unwrap();
            assert_eq!(report.total.cost_micros, all, "{group_by:?}");
            assert_eq!(report.total.calls, 1_000);
            assert_eq!(report.total.input_tokens, 100_000);
            assert_eq!(report.total.cached_input_tokens, 40_000);
            assert_eq!(report.total.cache_write_tokens, 10_000);
            assert_eq!(report.total.output_tokens, 20_000);
            assert_eq!(report.total.reasoning_tokens, 5_000);
            let summed: u64 = report.groups.values().map(|t| t.cost_micros).sum();
            assert_eq!(summed, all);
        }
        let by_key = database.spend(GroupBy::Key, None, None).await.unwrap();
        let key_a: u64 = expected
            .iter()
            .filter(|((_, k), _)| *k == "key_a")
            .map(|(_, c)| c)
            .sum();
        assert_eq!(by_key.groups["key_a"].cost_micros, key_a);
        assert_eq!(by_key.groups["key_a"].calls, 500);
        // One day, from and to included.
        let december = database
            .spend(GroupBy::Day, Some("2026-12-01"), Some("2026-12-01"))
            .await
            .unwrap();
        let first: u64 = expected
            .iter()
            .filter(|((d, _), _)| *d == "2026-12-01")
            .map(|(_, c)| c)
            .sum();
        assert_eq!(december.groups.keys().collect::<Vec<_>>(), ["2026-12-01"]);
        assert_eq!(december.total.cost_micros, first);
        // Written again later, a line adds to what it holds.
        ledger.record(entry("2026-12-01", "key_a", "acme", "gpt-4o", 7));
        ledger.flush().await.unwrap();
        let again = database
            .spend(GroupBy::Day, Some("2026-12-01"), Some("2026-12-01"))
            .await
            .unwrap();
        assert_eq!(again.total.cost_micros, first + 7);
        let error = database
            .spend(GroupBy::Day, Some("Dec 1"), None)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert!(GroupBy::parse("week").is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_away_the_ledger_holds_its_lines_and_counts_what_it_drops() {
    let Some(postgres) = TestPostgres::start() else {
        return;
    };
    let mut home = TestDatabase::Server(postgres);
    let database = Database::open(&DatabaseConfig {
        timeout: Duration::from_secs(2),
        ..DatabaseConfig::url(home.url())
    })
    .await
    .unwrap();
    let config = LedgerConfig {
        interval: Duration::from_secs(3_600),
        max_pending_lines: 2,
        ..LedgerConfig::default()
    };
    let ledger = Ledger::start(database.clone(), config);
    let TestDatabase::Server(server) = &mut home else {
        unreachable!()
    };
    server.kill();
    // Two lines held, the third line's calls dropped; a call on a held line is added to it.
    ledger.record(entry("2026-12-01", "key_a", "acme", "gpt-4o", 100));
    ledger.record(entry("2026-12-01", "key_b", "acme", "gpt-4o", 200));
    ledger.record(entry("2026-12-01", "key_a", "acme", "gpt-4o", 300));
    ledger.record(entry("2026-12-01", "key_c", "acme", "gpt-4o", 400));
    ledger.record(entry("2026-12-01", "key_d", "acme", "gpt-4o", 500));
    let error = ledger.flush().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(ledger.dropped(), 2);
    server.restart();
    // The pool finds the server again; the held lines are written whole.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ledger.flush().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ledger never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = database.spend(GroupBy::Key, None, None).await.unwrap();
    assert_eq!(report.total.cost_micros, 600);
    assert_eq!(report.total.calls, 3);
    assert_eq!(report.groups["key_a"].cost_micros, 400);
    assert_eq!(ledger.dropped(), 2);
}

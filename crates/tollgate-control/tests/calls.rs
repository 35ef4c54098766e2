//! The call log's table on a SQLite file and on a real PostgreSQL: written in batches, found by
//! what a record says, totalled, and pruned past its retention.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tollgate_control::{CallFilter, Database, DatabaseConfig};
use tollgate_core::{ErrorKind, MicroUsd, Usage};
use tollgate_log::CallRecord;
use tollgate_testkit::TestDatabase;

fn record(n: u64, at: SystemTime) -> Arc<CallRecord> {
    let mut record = CallRecord::new(format!("req_{n:05}"), at);
    record.key_id = Some(
        if n.is_multiple_of(2) {
            "key_even"
        } else {
            "key_odd"
        }
        .into(),
    );
    record.team = Some("search".into());
    record.model = Some(if n.is_multiple_of(3) { "big" } else { "small" }.into());
    record.status = Some(if n % 10 == 9 { 429 } else { 200 });
    if n % 10 == 9 {
        record.error = Some(ErrorKind::RateLimited);
    } else {
        record.usage = Usage::new(10 + n, 5);
        record.cost = Some(MicroUsd(100 + n));
    }
    record.tags.insert("n".into(), n.to_string());
    Arc::new(record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_written_found_totalled_and_pruned() {
    for home in TestDatabase::each("calls") {
        let database = Database::open(&DatabaseConfig::url(home.url()))
            .await
            .unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_472_000);
        // 2,500 records in one batch: more rows than one statement takes.
        let batch: Vec<Arc<CallRecord>> = (0..2_500)
            .map(|n| record(n, start + Duration::from_millis(n)))
            .collect();
        database.write_calls(&batch).await.unwrap();

        let all = database.call_totals(&CallFilter::default()).await.unwrap();
        let answered = batch.iter().filter(|r| r.error.is_none());
        assert_eq!(all.calls, 2_500);
        assert_eq!(
            all.cost_micros,
            answered.clone().map(|r| r.cost.unwrap().0).sum::<u64>()
        );
        assert_eq!(
            all.input_tokens,
            answered.map(|r| r.usage.input_tokens).sum::<u64>()
        );

        // Narrowed by key, model and status, newest first, a page at a time.
        let mut filter = CallFilter::default();
        filter.key = Some("key_odd".into());
        filter.model = Some("big".into());
        filter.status = Some(429);
        let expected: Vec<&str> = batch
            .iter()
            .rev()
            .filter(|r| {
                r.key_id.as_deref() == Some("key_odd")
                    && r.model.as_deref() == Some("big")
                    && r.status == Some(429)
            })
            .map(|r| &*r.request_id)
            .collect();
        let first = database.calls(&filter, 10, 0).await.unwrap();
        let second = database.calls(&filter, 10, 10).await.unwrap();
        let found: Vec<&str> = first
            .iter()
            .chain(&second)
            .map(|r| &*r.request_id)
            .collect();
        assert_eq!(found, expected[..20]);
        // A record comes back whole.
        assert_eq!(
            &first[0],
            &*batch
                .iter()
                .rev()
                .find(|r| *r.request_id == *expected[0])
                .unwrap()
                .clone()
        );

        // By time: [start + 1 s, start + 2 s).
        let mut window = CallFilter::default();
        window.from = Some(start + Duration::from_secs(1));
        window.to = Some(start + Duration::from_secs(2));
        assert_eq!(database.call_totals(&window).await.unwrap().calls, 1_000);

        assert_eq!(
            database.call("req_00042").await.unwrap().unwrap().tags["n"],
            "42"
        );
        assert!(database.call("req_none").await.unwrap().is_none());

        let pruned = database
            .prune_calls(start + Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(pruned, 500);
        assert_eq!(
            database
                .call_totals(&CallFilter::default())
                .await
                .unwrap()
                .calls,
            2_000
        );
        database.close().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_ledger_backlog_of_several_drains_loses_no_entry() {
    use tollgate_control::{GroupBy, Ledger, LedgerConfig, SpendEntry};
    let home = TestDatabase::each("ledger-backlog").remove(0);
    let database = Database::open(&DatabaseConfig::url(home.url()))
        .await
        .unwrap();
    let ledger = Ledger::start(database.clone(), LedgerConfig::default());
    // Queued without a pause: the writer finds them all waiting at once, past one drain.
    for n in 0..10_000u64 {
        ledger.record(SpendEntry::new(
            SystemTime::now(),
            "key_1",
            "search",
            "gpt-4o",
            "openai",
            Usage::new(1, 1),
            MicroUsd(n % 3),
        ));
    }
    ledger.flush().await.unwrap();
    let spend = database.spend(GroupBy::Team, None, None).await.unwrap();
    assert_eq!(spend.groups["search"].calls, 10_000);
    assert_eq!(ledger.dropped(), 0);
    database.close().await;
}

//! Stored Responses API answers on a SQLite file and on a real PostgreSQL: kept, read back whole
//! by their owner only, replaced under the same id, deleted, and pruned by age.

use std::time::{Duration, SystemTime};

use serde_json::json;
use tollgate_control::{Database, DatabaseConfig, StoredResponse};
use tollgate_testkit::TestDatabase;

const ALICE: &str = "acme\nalice";
const BOB: &str = "acme\nbob";

fn stored(id: &str, owner: &str, at: SystemTime, text: &str) -> StoredResponse {
    // Keys in an order a JSON map would not keep, and spacing: the object comes back to the byte.
    let response = format!(
        r#"{{"id": "{id}", "object": "response", "output": [{{"type": "message", "content": [{{"type": "output_text", "text": "{text}"}}]}}], "model": "m"}}"#
    );
    StoredResponse::new(
        id,
        owner,
        at,
        response,
        vec![
            json!({"role": "user", "content": "what is 2 + 2?"}),
            json!({"type": "function_call_output", "call_id": "call_1", "output": "{\"sum\": 4}"}),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_is_the_owners_alone_kept_replaced_deleted_and_pruned() {
    for home in TestDatabase::each("responses") {
        let database = Database::open(&DatabaseConfig::url(home.url()))
            .await
            .unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_472_000_123);
        let first = stored("resp_1", ALICE, at, "four");
        database.put_response(&first).await.unwrap();

        let found = database.response("resp_1", ALICE).await.unwrap().unwrap();
        assert_eq!(found, first);
        // Another key of the same tenant finds nothing: the same as an id that never was.
        assert_eq!(database.response("resp_1", BOB).await.unwrap(), None);
        assert_eq!(database.response("resp_none", ALICE).await.unwrap(), None);
        assert!(!database.delete_response("resp_1", BOB).await.unwrap());
        assert_eq!(
            database.response("resp_1", ALICE).await.unwrap(),
            Some(first)
        );

        // The same id for another owner is a response of its own; for the same owner, a
        // replacement.
        let bobs = stored("resp_1", BOB, at, "cuatro");
        database.put_response(&bobs).await.unwrap();
        let again = stored("resp_1", ALICE, at + Duration::from_secs(1), "four, again");
        database.put_response(&again).await.unwrap();
        assert_eq!(
            database.response("resp_1", ALICE).await.unwrap(),
            Some(again)
        );
        assert_eq!(database.response("resp_1", BOB).await.unwrap(), Some(bobs));

        assert!(database.delete_response("resp_1", ALICE).await.unwrap());
        assert!(!database.delete_response("resp_1", ALICE).await.unwrap());
        assert_eq!(database.response("resp_1", ALICE).await.unwrap(), None);
        assert!(database.response("resp_1", BOB).await.unwrap().is_some());

        // Pruned by when they were answered: Bob's (at) goes, a later one stays.
        let later = stored("resp_2", ALICE, at + Duration::from_secs(60), "later");
        database.put_response(&later).await.unwrap();
        let pruned = database
            .prune_responses(at + Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        assert_eq!(database.response("resp_1", BOB).await.unwrap(), None);
        assert_eq!(
            database.response("resp_2", ALICE).await.unwrap(),
            Some(later)
        );
        database.close().await;
    }
}

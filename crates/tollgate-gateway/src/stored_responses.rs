//! Where the Responses door keeps answers (`store: true`): the database's `tg_responses`,
//! written off the call path. A write under way is already found by the process that made it
//! (a caller continuing a response it just got never misses it), retried a few times when the
//! database does not take it, and waited for on shutdown. A stored response is kept
//! [`RETENTION`] (OpenAI keeps one 30 days), then pruned.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::sync::Notify;
use tollgate_control::{Database, StoredResponse};
use tollgate_core::LlmError;

/// Tries a write gets before it is given up (and counted).
const ATTEMPTS: u32 = 4;

/// The wait before the first retry; each next one waits twice as long.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// How long a stored response is kept, as OpenAI keeps one.
pub(crate) const RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// How often the store prunes what is past [`RETENTION`]: at most once an hour, after a write.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Owner and id: a stored response's name.
type Name = (String, String);

/// The stored responses of a gateway with a `database` section.
pub(crate) struct ResponseStore {
    database: Database,
    /// Writes under way, by owner and id: read before the database, so what a caller was just
    /// answered is found before it is written.
    pending: Mutex<HashMap<Name, Arc<StoredResponse>>>,
    /// Told whenever a write ends.
    settled: Notify,
    /// When the store last pruned (none yet: at its first write).
    pruned: Mutex<Option<std::time::Instant>>,
}

impl ResponseStore {
    pub(crate) fn new(database: Database) -> Self {
        Self {
            database,
            pending: Mutex::default(),
            settled: Notify::new(),
            pruned: Mutex::default(),
        }
    }

    /// Keeps `stored`, off the caller's path: it is found at once, and written by a task of
    /// its own.
    pub(crate) fn put(self: &Arc<Self>, stored: StoredResponse) {
        self.prune_when_due();
        let stored = Arc::new(stored);
        let name = (stored.owner.clone(), stored.id.clone());
        self.lock().insert(name.clone(), stored.clone());
        let store = self.clone();
        tokio::spawn(async move {
            let mut wait = FIRST_RETRY;
            let mut attempt = 1;
            let written = loop {
                match store.database.put_response(&stored).await {
                    Ok(()) => break true,
                    Err(error) if attempt < ATTEMPTS => {
                        tracing::debug!(target: "tollgate::responses", %error, attempt, "a stored response was not written; trying again");
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                        attempt += 1;
                    }
                    Err(error) => {
                        tracing::warn!(target: "tollgate::responses", %error, id = %stored.id, "a response could not be stored: calls continuing it will not find it");
                        break false;
                    }
                }
            };
            if !written {
                metrics::counter!("tollgate_responses_store_failed_total").increment(1);
            }
            // Only the entry this task wrote: a newer one under the same name has its own task.
            let mut pending = store.lock();
            if pending
                .get(&name)
                .is_some_and(|current| Arc::ptr_eq(current, &stored))
            {
                pending.remove(&name);
            }
            drop(pending);
            store.settled.notify_waiters();
        });
    }

    /// Prunes what is past [`RETENTION`], by a task of its own, when the last prune is an hour
    /// old (or there was none).
    fn prune_when_due(&self) {
        let now = std::time::Instant::now();
        {
            let mut pruned = self.pruned.lock().unwrap_or_else(PoisonError::into_inner);
            if pruned.is_some_and(|at| now.duration_since(at) < PRUNE_EVERY) {
                return;
            }
            *pruned = Some(now);
        }
        let database = self.database.clone();
        tokio::spawn(async move {
            let before = std::time::SystemTime::now() - RETENTION;
            match database.prune_responses(before).await {
                Ok(0) => {}
                Ok(pruned) => {
                    tracing::debug!(target: "tollgate::responses", pruned, "stored responses past their retention forgotten");
                }
                Err(error) => {
                    tracing::warn!(target: "tollgate::responses", %error, "stored responses past their retention could not be pruned");
                }
            }
        });
    }

    /// `owner`'s response `id`, if it has one: being written, or in the database.
    ///
    /// # Errors
    ///
    /// When the database does not answer.
    pub(crate) async fn get(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<Option<Arc<StoredResponse>>, LlmError> {
        if let Some(found) = self.lock().get(&(owner.to_owned(), id.to_owned())) {
            return Ok(Some(found.clone()));
        }
        Ok(self.database.response(id, owner).await?.map(Arc::new))
    }

    /// Forgets `owner`'s response `id` (once a write of it under way has ended, so that write
    /// cannot bring it back), and says whether there was one.
    ///
    /// # Errors
    ///
    /// When the database does not answer.
    pub(crate) async fn delete(&self, id: &str, owner: &str) -> Result<bool, LlmError> {
        let name = (owner.to_owned(), id.to_owned());
        self.settle(|pending| pending.contains_key(&name)).await;
        self.database.delete_response(id, owner).await
    }

    /// Waits until every write under way has ended: on shutdown, before the process exits.
    pub(crate) async fn flush(&self) {
        self.settle(|pending| !pending.is_empty()).await;
    }

    /// Waits while `busy` says so of the writes under way.
    async fn settle(&self, busy: impl Fn(&HashMap<Name, Arc<StoredResponse>>) -> bool) {
        loop {
            let ended = self.settled.notified();
            tokio::pin!(ended);
            // Registered before the check: a write that ends between the two still wakes it.
            ended.as_mut().enable();
            if !busy(&self.lock()) {
                return;
            }
            ended.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Name, Arc<StoredResponse>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::json;
    use tollgate_control::{DatabaseConfig, StoredResponse};

    use super::*;

    async fn database(name: &str) -> (Database, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "tollgate-response-store-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("tollgate.db").display());
        (
            Database::open(&DatabaseConfig::url(url)).await.unwrap(),
            dir,
        )
    }

    fn stored(id: &str) -> StoredResponse {
        StoredResponse::new(
            id,
            "acme\nalice",
            SystemTime::now(),
            format!(r#"{{"id":"{id}","object":"response","output":[]}}"#),
            vec![json!({"role": "user", "content": "hi"})],
        )
    }

    // One thread: a spawned write runs only when the test awaits, so "before it is written"
    // is a state the test holds, not a race it hopes to win.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_under_way_is_found_and_a_delete_waits_for_it() {
        let (database, dir) = database("found").await;
        let store = Arc::new(ResponseStore::new(database.clone()));
        store.put(stored("resp_1"));
        assert_eq!(store.lock().len(), 1, "not written yet");
        let found = store.get("resp_1", "acme\nalice").await.unwrap().unwrap();
        assert_eq!(found.id, "resp_1");
        assert!(store.get("resp_1", "acme\nbob").await.unwrap().is_none());

        // The delete waits for the write, which then cannot bring it back.
        assert!(store.delete("resp_1", "acme\nalice").await.unwrap());
        assert!(store.lock().is_empty());
        assert!(store.get("resp_1", "acme\nalice").await.unwrap().is_none());
        assert!(
            database
                .response("resp_1", "acme\nalice")
                .await
                .unwrap()
                .is_none()
        );

        // On shutdown, what is under way is written before the flush returns.
        store.put(stored("resp_2"));
        store.flush().await;
        assert!(
            database
                .response("resp_2", "acme\nalice")
                .await
                .unwrap()
                .is_some()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_response_past_its_retention_is_pruned_at_the_next_write() {
        let (database, dir) = database("pruned").await;
        let mut old = stored("resp_old");
        old.created_at = SystemTime::now() - RETENTION - Duration::from_secs(60);
        database.put_response(&old).await.unwrap();
        let recent = stored("resp_recent");
        database.put_response(&recent).await.unwrap();
        let store = Arc::new(ResponseStore::new(database.clone()));
        store.put(stored("resp_new"));
        store.flush().await;
        // The prune is a task of its own: wait on what it does, not for a time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while database
            .response("resp_old", "acme\nalice")
            .await
            .unwrap()
            .is_some()
        {
            assert!(tokio::time::Instant::now() < deadline, "never pruned");
            tokio::task::yield_now().await;
        }
        for kept in ["resp_recent", "resp_new"] {
            assert!(
                database
                    .response(kept, "acme\nalice")
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_the_database_refuses_is_tried_again_then_given_up() {
        let (database, dir) = database("refused").await;
        let store = Arc::new(ResponseStore::new(database.clone()));
        database.close().await;
        store.put(stored("resp_1"));
        // Four tries, 100 + 200 + 400 ms apart, and then no longer under way.
        store.flush().await;
        assert!(store.lock().is_empty());
        assert!(store.get("resp_1", "acme\nalice").await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}

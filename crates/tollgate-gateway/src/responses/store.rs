//! Where the Responses door keeps answers (`store: true`): the database's `tg_responses`,
//! written off the call path. A write under way is already found by the process that made it
//! (a caller continuing a response it just got never misses it), retried a few times when the
//! database does not take it, and waited for on shutdown.

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
}

impl ResponseStore {
    pub(crate) fn new(database: Database) -> Self {
        Self {
            database,
            pending: Mutex::default(),
            settled: Notify::new(),
        }
    }

    /// Keeps `stored`, off the caller's path: it is found at once, and written by a task of
    /// its own.
    pub(crate) fn put(self: &Arc<Self>, stored: StoredResponse) {
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

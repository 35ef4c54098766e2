//! Stored Responses API answers: the Response object a caller got, and the input items it
//! answered, kept per owner (a key) so that a later call naming it continues the conversation
//! and `GET /v1/responses/{id}` reads it back.
//!
//! An id is only ever found by its owner: another key asking for it finds nothing, exactly as
//! for an id that never was, so the answer never tells one key that another's response exists.

use std::time::SystemTime;

use serde_json::Value;
use tollgate_core::LlmError;

use crate::{
    database::Database,
    row::{get, millis, parsed, time, unavailable},
};

/// A response as stored ([`Database::put_response`]).
///
/// ```
/// use tollgate_control::StoredResponse;
///
/// let stored = StoredResponse::new(
///     "resp_0123",
///     "acme\nsearch-backend",
///     std::time::SystemTime::now(),
///     r#"{"id":"resp_0123","object":"response","output":[]}"#,
///     vec![serde_json::json!({"role": "user", "content": "hi"})],
/// );
/// assert_eq!(stored.id, "resp_0123");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredResponse {
    /// Its id: `resp_…`, the gateway's or the upstream's.
    pub id: String,
    /// Whose it is: the key that made it, under its tenant (`tenant` `\n` `key`), as the
    /// gateway names a caller everywhere it keeps something per key.
    pub owner: String,
    /// When it was answered.
    pub created_at: SystemTime,
    /// The Response object as the caller got it: JSON text, kept to the byte.
    pub response: String,
    /// The input items it answered, the history it continued first: with its `output`, what a
    /// call that continues it puts before its own input.
    pub input_items: Vec<Value>,
}

impl StoredResponse {
    /// A response to store.
    pub fn new(
        id: impl Into<String>,
        owner: impl Into<String>,
        created_at: SystemTime,
        response: impl Into<String>,
        input_items: Vec<Value>,
    ) -> Self {
        Self {
            id: id.into(),
            owner: owner.into(),
            created_at,
            response: response.into(),
            input_items,
        }
    }
}

impl Database {
    /// Keeps `stored`; one of its owner's with the same id is replaced (ids are the gateway's
    /// random ones or an upstream's, so this is a write of the same response again).
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not take it.
    pub async fn put_response(&self, stored: &StoredResponse) -> Result<(), LlmError> {
        sqlx::query(
            "INSERT INTO tg_responses (id, owner, created_at, response, input_items) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (owner, id) DO UPDATE SET created_at = excluded.created_at, \
             response = excluded.response, input_items = excluded.input_items",
        )
        .bind(stored.id.as_str())
        .bind(stored.owner.as_str())
        .bind(millis(stored.created_at))
        .bind(stored.response.as_str())
        .bind(crate::row::json(&stored.input_items))
        .execute(self.pool())
        .await
        .map_err(|e| unavailable("cannot store the response", &e))?;
        Ok(())
    }

    /// The response `id` of `owner`'s; `None` when it has none by that id (another owner's is
    /// none of its).
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer; `Internal` when what it holds cannot
    /// be read.
    pub async fn response(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<Option<StoredResponse>, LlmError> {
        let found = sqlx::query(
            "SELECT id, owner, created_at, response, input_items FROM tg_responses WHERE owner = $1 AND id = $2",
        )
        .bind(owner)
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| unavailable("cannot read the stored response", &e))?;
        let Some(found) = found else {
            return Ok(None);
        };
        Ok(Some(StoredResponse {
            id: get(&found, "id")?,
            owner: get(&found, "owner")?,
            created_at: time(get(&found, "created_at")?),
            response: get(&found, "response")?,
            input_items: parsed(&found, "input_items")?,
        }))
    }

    /// Forgets the response `id` of `owner`'s, and says whether it had one.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, LlmError> {
        let done = sqlx::query("DELETE FROM tg_responses WHERE owner = $1 AND id = $2")
            .bind(owner)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| unavailable("cannot delete the stored response", &e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets every response answered before `before`, and says how many.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn prune_responses(&self, before: SystemTime) -> Result<u64, LlmError> {
        let done = sqlx::query("DELETE FROM tg_responses WHERE created_at < $1")
            .bind(millis(before))
            .execute(self.pool())
            .await
            .map_err(|e| unavailable("cannot prune the stored responses", &e))?;
        Ok(done.rows_affected())
    }
}

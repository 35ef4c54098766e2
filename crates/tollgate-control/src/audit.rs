//! The audit log: every change to a key or a team, who made it and when, never a secret.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use tollgate_core::LlmError;

use crate::{
    database::Database,
    row::{self, get, parsed, rfc3339, unavailable},
};

/// One change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// `audit_` and 16 hex digits.
    pub id: String,
    /// When.
    #[serde(with = "rfc3339")]
    pub at: SystemTime,
    /// Who: the admin key's name, or `cli`.
    pub actor: String,
    /// What: `key.create`, `key.update`, `key.rotate`, `key.revoke`, `team.create`, ...
    pub action: String,
    /// The key's id or the team's name.
    pub target: String,
    /// The fields given, as they were given (a secret is never among them).
    pub detail: Value,
}

impl Database {
    /// The newest `limit` changes, newest first.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, LlmError> {
        sqlx::query(
            "SELECT id, at, actor, action, target, detail FROM tg_audit ORDER BY seq DESC, at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(|e| unavailable("cannot read the audit log", &e))?
        .iter()
        .map(|entry| {
            Ok(AuditEntry {
                id: get(entry, "id")?,
                at: row::time(get(entry, "at")?),
                actor: get(entry, "actor")?,
                action: get(entry, "action")?,
                target: get(entry, "target")?,
                detail: parsed(entry, "detail")?,
            })
        })
        .collect()
    }
}

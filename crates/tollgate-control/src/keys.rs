//! Virtual keys as records: made with a secret shown once, found by their hash, changed,
//! rotated with a grace period, revoked.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use tollgate_core::{ErrorKind, LlmError};
use tollgate_ratelimit::Limits;

use crate::{
    database::Database,
    row::{
        self, changed, check_limits, check_name, get, millis, parsed, parsed_option, rfc3339,
        unavailable,
    },
    secret::{hash_key, new_id, new_key},
};

/// A key as stored: who it is, what it may use, and its life. Never its secret; its hash is
/// kept but not shown (in JSON or in `Debug`).
#[derive(Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KeyRecord {
    /// `key_` and 16 hex digits.
    pub id: String,
    /// Its name, for people (its id is its principal in limits and the ledger).
    pub name: String,
    /// The team it belongs to: the tenant its calls are made for.
    pub team: String,
    /// The roles it may name; `None` for every role.
    pub roles: Option<Vec<String>>,
    /// The `provider/model` names it may use directly (`provider/*` for any of a provider's).
    pub models: Vec<String>,
    /// Its own limits and budgets, besides its team's.
    pub limits: Option<Limits>,
    /// Anything the operator keeps with it.
    pub metadata: BTreeMap<String, Value>,
    /// Labels for reports.
    pub tags: Vec<String>,
    /// Whether it opens the admin API and the live page.
    pub admin: bool,
    /// `sha256:` and its digest.
    #[serde(skip)]
    pub hash: String,
    /// The hash of the secret it had before its last rotation, still accepted until
    /// `previous_until`.
    #[serde(skip)]
    pub previous_hash: Option<String>,
    /// Until when the previous secret is accepted.
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<SystemTime>,
    /// When it was made.
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
    /// When it last changed.
    #[serde(with = "rfc3339")]
    pub updated_at: SystemTime,
    /// When it stops working, if ever.
    #[serde(with = "rfc3339::option")]
    pub expires_at: Option<SystemTime>,
    /// When it was revoked, if it was.
    #[serde(with = "rfc3339::option")]
    pub revoked_at: Option<SystemTime>,
    /// When a call last used it (written in batches, so up to a few seconds behind).
    #[serde(with = "rfc3339::option")]
    pub last_used_at: Option<SystemTime>,
}

impl std::fmt::Debug for KeyRecord {
    /// Everything but the hashes, which a log line has no need of.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("team", &self.team)
            .field("roles", &self.roles)
            .field("models", &self.models)
            .field("limits", &self.limits)
            .field("metadata", &self.metadata)
            .field("tags", &self.tags)
            .field("admin", &self.admin)
            .field("previous_until", &self.previous_until)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("last_used_at", &self.last_used_at)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    /// Whether it admits calls at `now`: not revoked, not expired.
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A key just made or rotated: its record, and its secret, which is shown this once and stored
/// nowhere.
#[derive(Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CreatedKey {
    /// The record.
    #[serde(flatten)]
    pub record: KeyRecord,
    /// The secret a caller presents.
    pub key: String,
}

impl std::fmt::Debug for CreatedKey {
    /// The secret is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// A key to make.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NewKey {
    /// 1 to 64 letters, digits, `.`, `_` or `-`.
    pub name: String,
    /// The team it belongs to, which must exist.
    pub team: String,
    /// The roles it may name; absent, every role.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// The `provider/model` names it may use directly.
    #[serde(default)]
    pub models: Vec<String>,
    /// Its own limits and budgets.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Anything to keep with it.
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    /// Labels for reports.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether it opens the admin API.
    #[serde(default)]
    pub admin: bool,
    /// When it stops working (RFC 3339), if ever.
    #[serde(default, with = "timestamp")]
    pub expires_at: Option<SystemTime>,
}

impl NewKey {
    /// A key named `name` for team `team`, every other field at its default.
    pub fn new(name: impl Into<String>, team: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            team: team.into(),
            ..Self::default()
        }
    }
}

/// What to change in a key: each field given replaces the one stored; `limits`, `roles` and
/// `expires_at` may be `null` to clear them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeyChange {
    /// New roles, or `Some(None)` for every role.
    #[serde(default, deserialize_with = "row::present")]
    pub roles: Option<Option<Vec<String>>>,
    /// New `provider/model` names.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// New limits, or `Some(None)` for none.
    #[serde(default, deserialize_with = "row::present")]
    pub limits: Option<Option<Limits>>,
    /// New metadata.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// New tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// A new expiry, or `Some(None)` for never.
    #[serde(default, with = "timestamp::change")]
    pub expires_at: Option<Option<SystemTime>>,
}

/// RFC 3339 times read into `SystemTime`.
mod timestamp {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, de::Error as _};

    fn read(text: &str) -> Result<SystemTime, String> {
        text.parse::<jiff::Timestamp>()
            .map(|at| {
                SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_nanos(
                        u64::try_from(at.as_nanosecond()).unwrap_or(0),
                    )
            })
            .map_err(|e| format!("expected an RFC 3339 time such as 2027-01-01T00:00:00Z: {e}"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| read(&text).map_err(D::Error::custom))
            .transpose()
    }

    pub(super) mod change {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, de::Error as _};

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Option<SystemTime>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| super::read(&text).map_err(D::Error::custom))
                .transpose()
                .map(Some)
        }
    }
}

const COLUMNS: &str = "id, name, hash, previous_hash, previous_until, team, roles, models, limits, \
     metadata, tags, admin, created_at, updated_at, expires_at, revoked_at, last_used_at";

fn key(row: &AnyRow) -> Result<KeyRecord, LlmError> {
    let optional_time = |column: &str| -> Result<Option<SystemTime>, LlmError> {
        Ok(get::<Option<i64>>(row, column)?.map(row::time))
    };
    Ok(KeyRecord {
        id: get(row, "id")?,
        name: get(row, "name")?,
        hash: get(row, "hash")?,
        previous_hash: get(row, "previous_hash")?,
        previous_until: optional_time("previous_until")?,
        team: get(row, "team")?,
        roles: parsed_option(row, "roles")?,
        models: parsed(row, "models")?,
        limits: parsed_option(row, "limits")?,
        metadata: parsed(row, "metadata")?,
        tags: parsed(row, "tags")?,
        admin: get::<i64>(row, "admin")? != 0,
        created_at: row::time(get(row, "created_at")?),
        updated_at: row::time(get(row, "updated_at")?),
        expires_at: optional_time("expires_at")?,
        revoked_at: optional_time("revoked_at")?,
        last_used_at: optional_time("last_used_at")?,
    })
}

fn check_models(models: &[String]) -> Result<(), LlmError> {
    match models.iter().find(|model| {
        !model
            .split_once('/')
            .is_some_and(|(provider, model)| !provider.is_empty() && !model.is_empty())
    }) {
        Some(model) => Err(LlmError::new(
            ErrorKind::InvalidRequest,
            format!("models: {model:?} is not `provider/model` or `provider/*`"),
        )),
        None => Ok(()),
    }
}

fn made(record: KeyRecord, key: String) -> CreatedKey {
    CreatedKey { record, key }
}

fn secret() -> Result<String, LlmError> {
    new_key().map_err(|e| {
        LlmError::new(
            ErrorKind::Internal,
            format!("the operating system gave no randomness for a key: {e}"),
        )
    })
}

impl Database {
    /// Makes a key for an existing team and returns its secret, this once; `actor` is who, for
    /// the audit log.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for a bad name, models or limits, or a team that does not exist;
    /// `Unavailable` when the database does not answer.
    pub async fn create_key(&self, actor: &str, new: NewKey) -> Result<CreatedKey, LlmError> {
        check_name("a key's name", &new.name)?;
        check_models(&new.models)?;
        check_limits("limits", new.limits.as_ref())?;
        if self.team(&new.team).await?.is_none() {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                format!("team: there is no team {:?}; make it first", new.team),
            ));
        }
        let (id, secret) = (new_id("key_"), secret()?);
        let now = millis(SystemTime::now());
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO tg_keys (id, name, hash, team, roles, models, limits, metadata, tags, admin, \
             created_at, updated_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(hash_key(&secret))
        .bind(&new.team)
        .bind(new.roles.as_ref().map(row::json))
        .bind(row::json(&new.models))
        .bind(new.limits.as_ref().map(row::json))
        .bind(row::json(&new.metadata))
        .bind(row::json(&new.tags))
        .bind(i64::from(new.admin))
        .bind(now)
        .bind(now)
        .bind(new.expires_at.map(millis))
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("cannot make the key", &e))?;
        let detail = json!({
            "name": new.name, "team": new.team, "roles": new.roles, "models": new.models,
            "limits": new.limits, "metadata": new.metadata, "tags": new.tags, "admin": new.admin,
            "expires_at": new.expires_at.map(millis),
        });
        changed(&mut tx, actor, "key.create", &id, detail).await?;
        self.commit(tx).await?;
        let record = self.key(&id).await?.expect("just made");
        Ok(made(record, secret))
    }

    /// The key `id`.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn key(&self, id: &str) -> Result<Option<KeyRecord>, LlmError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM tg_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| unavailable("cannot read the key", &e))?
            .as_ref()
            .map(key)
            .transpose()
    }

    /// Every key, revoked and expired ones included, oldest first.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn keys(&self) -> Result<Vec<KeyRecord>, LlmError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tg_keys ORDER BY created_at, id"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(|e| unavailable("cannot read the keys", &e))?
        .iter()
        .map(key)
        .collect()
    }

    /// Changes a key; `None` when there is none by that id.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for bad models or limits; `Unavailable` when the database does not
    /// answer.
    pub async fn update_key(
        &self,
        actor: &str,
        id: &str,
        change: KeyChange,
    ) -> Result<Option<KeyRecord>, LlmError> {
        let Some(mut record) = self.key(id).await? else {
            return Ok(None);
        };
        if let Some(models) = &change.models {
            check_models(models)?;
            record.models.clone_from(models);
        }
        if let Some(limits) = &change.limits {
            check_limits("limits", limits.as_ref())?;
            record.limits.clone_from(limits);
        }
        if let Some(roles) = &change.roles {
            record.roles.clone_from(roles);
        }
        if let Some(metadata) = &change.metadata {
            record.metadata.clone_from(metadata);
        }
        if let Some(tags) = &change.tags {
            record.tags.clone_from(tags);
        }
        if let Some(expires_at) = change.expires_at {
            record.expires_at = expires_at;
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE tg_keys SET roles = $1, models = $2, limits = $3, metadata = $4, tags = $5, \
             expires_at = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(record.roles.as_ref().map(row::json))
        .bind(row::json(&record.models))
        .bind(record.limits.as_ref().map(row::json))
        .bind(row::json(&record.metadata))
        .bind(row::json(&record.tags))
        .bind(record.expires_at.map(millis))
        .bind(millis(SystemTime::now()))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("cannot change the key", &e))?;
        let detail = json!({
            "roles": change.roles, "models": change.models, "limits": change.limits,
            "metadata": change.metadata, "tags": change.tags,
            "expires_at": change.expires_at.map(|at| at.map(millis)),
        });
        changed(&mut tx, actor, "key.update", id, detail).await?;
        self.commit(tx).await?;
        self.key(id).await
    }

    /// Revokes a key, at once and for good; `None` when there is none by that id. Revoking a
    /// revoked key changes nothing.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn revoke_key(&self, actor: &str, id: &str) -> Result<Option<KeyRecord>, LlmError> {
        let Some(record) = self.key(id).await? else {
            return Ok(None);
        };
        if record.revoked_at.is_some() {
            return Ok(Some(record));
        }
        let now = millis(SystemTime::now());
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE tg_keys SET revoked_at = $1, updated_at = $2, previous_hash = NULL, \
             previous_until = NULL WHERE id = $3",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("cannot revoke the key", &e))?;
        changed(&mut tx, actor, "key.revoke", id, json!({})).await?;
        self.commit(tx).await?;
        self.key(id).await
    }

    /// Gives a key a new secret, returned this once; the old one keeps working for `grace`, then
    /// no more. `None` when there is no such key.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for a revoked key; `Unavailable` when the database does not answer.
    pub async fn rotate_key(
        &self,
        actor: &str,
        id: &str,
        grace: Duration,
    ) -> Result<Option<CreatedKey>, LlmError> {
        let Some(record) = self.key(id).await? else {
            return Ok(None);
        };
        if record.revoked_at.is_some() {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                format!("key {id} is revoked; make a new one"),
            ));
        }
        let secret = secret()?;
        let now = SystemTime::now();
        let until = (!grace.is_zero()).then(|| now + grace);
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE tg_keys SET previous_hash = $1, previous_until = $2, hash = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(until.map(|_| record.hash.clone()))
        .bind(until.map(millis))
        .bind(hash_key(&secret))
        .bind(millis(now))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("cannot rotate the key", &e))?;
        let detail = json!({ "grace_ms": u64::try_from(grace.as_millis()).unwrap_or(u64::MAX) });
        changed(&mut tx, actor, "key.rotate", id, detail).await?;
        self.commit(tx).await?;
        let record = self.key(id).await?.expect("just rotated");
        Ok(Some(made(record, secret)))
    }

    /// Writes when keys were last used, one statement per key in one transaction. It moves no
    /// version: nobody needs to reload for it.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn touch_keys(&self, used: &[(String, SystemTime)]) -> Result<(), LlmError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE tg_keys SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(millis(*at))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("cannot write when keys were used", &e))?;
        }
        self.commit(tx).await
    }
}

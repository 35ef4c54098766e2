//! Teams (the gateway's tenants) as records: each with its own limits and budgets.

use std::{collections::BTreeMap, time::SystemTime};

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
};

/// A team: its calls' tenant (its limits, its cache scope, its line in the cost report).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TeamRecord {
    /// Its name, which is the tenant its keys' calls are made for.
    pub name: String,
    /// Its own limits and budgets.
    pub limits: Option<Limits>,
    /// Anything the operator keeps with it.
    pub metadata: BTreeMap<String, Value>,
    /// When it was made.
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
    /// When it last changed.
    #[serde(with = "rfc3339")]
    pub updated_at: SystemTime,
}

/// A team to make.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NewTeam {
    /// 1 to 64 letters, digits, `.`, `_` or `-`.
    pub name: String,
    /// Its limits and budgets (`{ per_minute: 600, budgets: [{ limit: "500", period: month }] }`).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Anything to keep with it.
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
}

impl NewTeam {
    /// A team named `name`, with no limits of its own.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// What to change in a team: each field given replaces the one stored (`limits: null` clears
/// them).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TeamChange {
    /// New limits, or `Some(None)` for none.
    #[serde(default, deserialize_with = "row::present")]
    pub limits: Option<Option<Limits>>,
    /// New metadata.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
}

const COLUMNS: &str = "name, limits, metadata, created_at, updated_at";

fn team(row: &AnyRow) -> Result<TeamRecord, LlmError> {
    Ok(TeamRecord {
        name: get(row, "name")?,
        limits: parsed_option(row, "limits")?,
        metadata: parsed(row, "metadata")?,
        created_at: row::time(get(row, "created_at")?),
        updated_at: row::time(get(row, "updated_at")?),
    })
}

impl Database {
    /// Makes a team; `actor` is who, for the audit log.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for a bad name or limits, or a name already taken; `Unavailable` when
    /// the database does not answer.
    pub async fn create_team(&self, actor: &str, new: NewTeam) -> Result<TeamRecord, LlmError> {
        check_name("a team's name", &new.name)?;
        check_limits("limits", new.limits.as_ref())?;
        if self.team(&new.name).await?.is_some() {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                format!("a team named {:?} exists", new.name),
            ));
        }
        let now = millis(SystemTime::now());
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO tg_teams (name, limits, metadata, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&new.name)
        .bind(new.limits.as_ref().map(row::json))
        .bind(row::json(&new.metadata))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("cannot make the team", &e))?;
        let detail = json!({ "limits": new.limits, "metadata": new.metadata });
        changed(&mut tx, actor, "team.create", &new.name, detail).await?;
        self.commit(tx).await?;
        Ok(self.team(&new.name).await?.expect("just made"))
    }

    /// The team named `name`.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn team(&self, name: &str) -> Result<Option<TeamRecord>, LlmError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM tg_teams WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| unavailable("cannot read the team", &e))?
            .as_ref()
            .map(team)
            .transpose()
    }

    /// Every team, by name.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn teams(&self) -> Result<Vec<TeamRecord>, LlmError> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM tg_teams ORDER BY name"))
            .fetch_all(self.pool())
            .await
            .map_err(|e| unavailable("cannot read the teams", &e))?
            .iter()
            .map(team)
            .collect()
    }

    /// Changes a team; `None` when there is none by that name.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for bad limits; `Unavailable` when the database does not answer.
    pub async fn update_team(
        &self,
        actor: &str,
        name: &str,
        change: TeamChange,
    ) -> Result<Option<TeamRecord>, LlmError> {
        let Some(mut team) = self.team(name).await? else {
            return Ok(None);
        };
        if let Some(limits) = change.limits.clone() {
            check_limits("limits", limits.as_ref())?;
            team.limits = limits;
        }
        if let Some(metadata) = change.metadata.clone() {
            team.metadata = metadata;
        }
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE tg_teams SET limits = $1, metadata = $2, updated_at = $3 WHERE name = $4",
        )
        .bind(team.limits.as_ref().map(row::json))
        .bind(row::json(&team.metadata))
        .bind(millis(SystemTime::now()))
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(|e| unavailable("cannot change the team", &e))?;
        let detail = json!({ "limits": change.limits, "metadata": change.metadata });
        changed(&mut tx, actor, "team.update", name, detail).await?;
        self.commit(tx).await?;
        self.team(name).await
    }

    /// Deletes a team that no key belongs to; `false` when there is none by that name.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` while keys belong to it (revoked ones included: their spend names it);
    /// `Unavailable` when the database does not answer.
    pub async fn delete_team(&self, actor: &str, name: &str) -> Result<bool, LlmError> {
        let members: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tg_keys WHERE team = $1")
            .bind(name)
            .fetch_one(self.pool())
            .await
            .map_err(|e| unavailable("cannot count the team's keys", &e))
            .and_then(|row| get(&row, "n"))?;
        if members > 0 {
            return Err(LlmError::new(
                ErrorKind::InvalidRequest,
                format!("team {name:?} still has {members} key(s); move or delete them first"),
            ));
        }
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM tg_teams WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| unavailable("cannot delete the team", &e))?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        changed(&mut tx, actor, "team.delete", name, json!({})).await?;
        self.commit(tx).await?;
        Ok(true)
    }
}

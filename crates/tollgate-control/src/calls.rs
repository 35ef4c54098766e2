//! The call log's table: each call's [`CallRecord`], written in batches by the gateway's
//! database sink, found by time, key, team, model and status, and pruned past its retention.

use std::{sync::Arc, time::SystemTime};

use serde::Serialize;
use sqlx::any::AnyArguments;
use tollgate_core::LlmError;
use tollgate_log::CallRecord;

use crate::{
    database::Database,
    row::{self, get, millis, unavailable},
};

/// Which calls to read ([`Database::calls`]): every field given narrows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallFilter {
    /// Made with this key (its id).
    pub key: Option<String>,
    /// By this team.
    pub team: Option<String>,
    /// Answered by this model (or asked for it, when none answered).
    pub model: Option<String>,
    /// Answered with this HTTP status.
    pub status: Option<u16>,
    /// In at or after this time.
    pub from: Option<SystemTime>,
    /// In before this time.
    pub to: Option<SystemTime>,
}

/// What the calls a filter finds add up to ([`Database::call_totals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CallTotals {
    /// Calls.
    pub calls: u64,
    /// Prompt tokens billed.
    pub input_tokens: u64,
    /// Answer tokens billed.
    pub output_tokens: u64,
    /// Micro-dollars billed.
    pub cost_micros: u64,
}

/// Rows one statement writes at most on PostgreSQL: about 5,500 parameters.
const POSTGRES_ROWS_PER_INSERT: usize = 500;

/// Rows one statement writes at most on SQLite. SQLite looks each `$N` parameter's name up in a
/// list, so a statement's binding costs time square in its rows; and each statement is a round
/// trip to sqlx's SQLite thread. Forty rows keeps both small (benches/logs.rs, `table_write`).
const SQLITE_ROWS_PER_INSERT: usize = 40;

/// The call table's columns, as many as each row binds.
const COLUMNS: usize = 11;

impl Database {
    /// Writes `batch`, in one transaction.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not take it (then none of it is written).
    pub async fn write_calls(&self, batch: &[Arc<CallRecord>]) -> Result<(), LlmError> {
        let per_statement = match self.backend() {
            crate::database::Backend::Sqlite => SQLITE_ROWS_PER_INSERT,
            crate::database::Backend::Postgres => POSTGRES_ROWS_PER_INSERT,
        };
        let mut tx = self.begin().await?;
        let mut statements: Vec<(usize, String)> = Vec::new();
        for rows in batch.chunks(per_statement) {
            // The statement for this many rows, made once.
            let sql = match statements.iter().find(|(n, _)| *n == rows.len()) {
                Some((_, sql)) => sql.clone(),
                None => {
                    let sql = insert_statement(rows.len());
                    statements.push((rows.len(), sql.clone()));
                    sql
                }
            };
            let mut arguments = AnyArguments::default();
            for record in rows {
                add_row(&mut arguments, record)?;
            }
            sqlx::query_with(&sql, arguments)
                .execute(&mut *tx)
                .await
                .map_err(|e| unavailable("cannot write the call log", &e))?;
        }
        tx.commit()
            .await
            .map_err(|e| unavailable("cannot write the call log", &e))
    }

    /// The calls `filter` finds, newest first: `limit` of them after skipping `offset`.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn calls(
        &self,
        filter: &CallFilter,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<CallRecord>, LlmError> {
        let (clause, mut arguments) = filter_clause(filter)?;
        let next = arguments_len(filter) + 1;
        let sql = format!(
            "SELECT record FROM tg_calls{clause} ORDER BY at DESC, request_id DESC LIMIT ${next} OFFSET ${}",
            next + 1
        );
        add(&mut arguments, i64::from(limit))?;
        add(&mut arguments, i64::from(offset))?;
        sqlx::query_with(&sql, arguments)
            .fetch_all(self.pool())
            .await
            .map_err(|e| unavailable("cannot read the call log", &e))?
            .iter()
            .map(|found| row::parsed(found, "record"))
            .collect()
    }

    /// The newest call whose id is `request_id`, if the log has it.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn call(&self, request_id: &str) -> Result<Option<CallRecord>, LlmError> {
        let found = sqlx::query(
            "SELECT record FROM tg_calls WHERE request_id = $1 ORDER BY at DESC LIMIT 1",
        )
        .bind(request_id)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| unavailable("cannot read the call log", &e))?;
        found.map(|found| row::parsed(&found, "record")).transpose()
    }

    /// What the calls `filter` finds add up to.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn call_totals(&self, filter: &CallFilter) -> Result<CallTotals, LlmError> {
        let (clause, arguments) = filter_clause(filter)?;
        // PostgreSQL sums BIGINTs as NUMERIC: each sum is cast back, on both backends.
        let sql = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS calls, CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
             CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost_micros FROM tg_calls{clause}"
        );
        let found = sqlx::query_with(&sql, arguments)
            .fetch_one(self.pool())
            .await
            .map_err(|e| unavailable("cannot read the call log", &e))?;
        let number = |column: &str| -> Result<u64, LlmError> {
            Ok(u64::try_from(get::<i64>(&found, column)?).unwrap_or(0))
        };
        Ok(CallTotals {
            calls: number("calls")?,
            input_tokens: number("input_tokens")?,
            output_tokens: number("output_tokens")?,
            cost_micros: number("cost_micros")?,
        })
    }

    /// Removes the calls in before `before`, and says how many.
    ///
    /// # Errors
    ///
    /// `Unavailable` when the database does not answer.
    pub async fn prune_calls(&self, before: SystemTime) -> Result<u64, LlmError> {
        let done = sqlx::query("DELETE FROM tg_calls WHERE at < $1")
            .bind(millis(before))
            .execute(self.pool())
            .await
            .map_err(|e| unavailable("cannot prune the call log", &e))?;
        Ok(done.rows_affected())
    }
}

/// `INSERT` of `rows` rows into the call table.
fn insert_statement(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO tg_calls (at, request_id, key_id, team, model, status, error, input_tokens, output_tokens, cost_micros, record) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let placeholders: Vec<String> = (1..=COLUMNS)
            .map(|column| format!("${}", row * COLUMNS + column))
            .collect();
        sql.push('(');
        sql.push_str(&placeholders.join(", "));
        sql.push(')');
    }
    sql
}

fn add<'q, T>(arguments: &mut AnyArguments<'q>, value: T) -> Result<(), LlmError>
where
    T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Arguments as _;
    arguments
        .add(value)
        .map_err(|e| LlmError::new(tollgate_core::ErrorKind::Internal, format!("{e}")))
}

fn add_row(arguments: &mut AnyArguments<'_>, record: &CallRecord) -> Result<(), LlmError> {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let text = |name: &Option<Arc<str>>| name.as_deref().map(str::to_owned);
    add(arguments, millis(record.at))?;
    add(arguments, record.request_id.to_string())?;
    add(arguments, text(&record.key_id))?;
    add(arguments, text(&record.team))?;
    add(arguments, text(&record.model))?;
    add(arguments, record.status.map(i32::from))?;
    add(arguments, record.error.map(|kind| kind.name().to_owned()))?;
    add(arguments, int(record.usage.input_tokens))?;
    add(arguments, int(record.usage.output_tokens))?;
    add(arguments, int(record.cost.map_or(0, |c| c.0)))?;
    add(arguments, row::json(record))?;
    Ok(())
}

/// How many parameters `filter`'s clause takes.
fn arguments_len(filter: &CallFilter) -> usize {
    [
        filter.key.is_some(),
        filter.team.is_some(),
        filter.model.is_some(),
        filter.status.is_some(),
        filter.from.is_some(),
        filter.to.is_some(),
    ]
    .into_iter()
    .filter(|given| *given)
    .count()
}

/// ` WHERE …` for `filter` (empty when it narrows nothing), with its parameters.
fn filter_clause(filter: &CallFilter) -> Result<(String, AnyArguments<'static>), LlmError> {
    let mut conditions = Vec::new();
    let mut arguments = AnyArguments::default();
    let mut n = 0;
    let mut next = |column: &str, conditions: &mut Vec<String>, op: &str| {
        n += 1;
        conditions.push(format!("{column} {op} ${n}"));
    };
    for (column, value) in [
        ("key_id", &filter.key),
        ("team", &filter.team),
        ("model", &filter.model),
    ] {
        if let Some(value) = value {
            next(column, &mut conditions, "=");
            add(&mut arguments, value.clone())?;
        }
    }
    if let Some(status) = filter.status {
        next("status", &mut conditions, "=");
        add(&mut arguments, i32::from(status))?;
    }
    if let Some(from) = filter.from {
        next("at", &mut conditions, ">=");
        add(&mut arguments, millis(from))?;
    }
    if let Some(to) = filter.to {
        next("at", &mut conditions, "<");
        add(&mut arguments, millis(to))?;
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    Ok((clause, arguments))
}

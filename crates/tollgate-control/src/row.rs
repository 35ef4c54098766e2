//! How values are written in the schema's one text for both backends: times as Unix
//! milliseconds, lists and maps as JSON text; and what every change writes beside itself (the
//! audit entry and the version other processes poll).

use std::time::{Duration, SystemTime};

use serde::{Serialize, de::DeserializeOwned};
use sqlx::{Any, Row as _, Transaction, any::AnyRow};
use tollgate_core::{ErrorKind, LlmError, redact};

use crate::secret::new_id;

/// `at` as Unix milliseconds.
pub(crate) fn millis(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as a time.
pub(crate) fn time(millis: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

pub(crate) fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialize")
}

/// A column's JSON, read back; a value this version cannot read is an internal error, named.
pub(crate) fn parsed<T: DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, LlmError> {
    from_json(column, &get::<String>(row, column)?)
}

/// A nullable column's JSON, read back.
pub(crate) fn parsed_option<T: DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>, LlmError> {
    get::<Option<String>>(row, column)?
        .map(|text| from_json(column, &text))
        .transpose()
}

fn from_json<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, LlmError> {
    serde_json::from_str(text).map_err(|e| {
        LlmError::new(
            ErrorKind::Internal,
            format!("the database's `{column}` holds what this version cannot read: {e}"),
        )
    })
}

/// A column's value.
pub(crate) fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, LlmError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(column)
        .map_err(|e| unavailable(&format!("cannot read `{column}`"), &e))
}

/// Writes the audit entry for a change and moves the version other processes poll, inside the
/// change's own transaction: a change is recorded and announced exactly when it happens.
pub(crate) async fn changed(
    tx: &mut Transaction<'_, Any>,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), LlmError> {
    // The version first: its row lock orders concurrent changes, and the entry keeps the number.
    let seq: i64 = sqlx::query_scalar(
        "UPDATE tg_meta SET value = value + 1 WHERE name = 'records_version' RETURNING value",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| unavailable("cannot move the records' version", &e))?;
    sqlx::query(
        "INSERT INTO tg_audit (id, at, actor, action, target, detail, seq) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id("audit_"))
    .bind(millis(SystemTime::now()))
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(json(&detail))
    .bind(seq)
    .execute(&mut **tx)
    .await
    .map_err(|e| unavailable("cannot write the audit log", &e))?;
    Ok(())
}

/// A time written as RFC 3339 in JSON (`2026-12-05T12:00:00Z`).
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        match jiff::Timestamp::try_from(*at) {
            Ok(at) => s.collect_str(&at),
            Err(_) => s.serialize_none(),
        }
    }

    pub(crate) mod option {
        use std::time::SystemTime;

        use serde::Serializer;

        pub(crate) fn serialize<S: Serializer>(
            at: &Option<SystemTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// Reads a field that may be absent (not changed), `null` (cleared) or a value (set).
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A name a record may have: 1 to 64 letters, digits, `.`, `_` or `-`.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), LlmError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fine {
        Ok(())
    } else {
        Err(LlmError::new(
            ErrorKind::InvalidRequest,
            format!("{what}: 1 to 64 letters, digits, `.`, `_` or `-`"),
        ))
    }
}

/// `limits` checked as the rate limiter would build them, the mistake named under `at`.
pub(crate) fn check_limits(
    at: &str,
    limits: Option<&tollgate_ratelimit::Limits>,
) -> Result<(), LlmError> {
    match limits.map(|limits| limits.quota(at)) {
        Some(Err(mistakes)) => Err(LlmError::new(
            ErrorKind::InvalidRequest,
            mistakes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
        _ => Ok(()),
    }
}

/// A database failure in tollgate's words, with the driver's reason (secrets cut).
pub(crate) fn unavailable(what: &str, error: &dyn std::error::Error) -> LlmError {
    LlmError::new(
        ErrorKind::Unavailable,
        format!("{what}: {}", redact(&error.to_string())),
    )
}

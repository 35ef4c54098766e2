//! `/admin/spend` (the ledger grouped and totalled, as JSON or CSV) and `/admin/audit` (every
//! change made to the records, newest first).

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use http::{StatusCode, header};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;
use tollgate_control::GroupBy;

use super::{Admin, answer, fail, failed};
use crate::error::ApiError;

/// `?group_by=key|team|model|provider|day&from=YYYY-MM-DD&to=YYYY-MM-DD&format=json|csv`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpendQuery {
    group_by: String,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

pub(super) async fn spend(admin: Admin, request: Request) -> Response {
    let query: SpendQuery = match query(&request) {
        Ok(query) => query,
        Err(refused) => return fail(refused),
    };
    let group_by = match GroupBy::parse(&query.group_by) {
        Ok(group_by) => group_by,
        Err(error) => return failed(&error),
    };
    let wants_csv = match query.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return fail(
                ApiError::invalid(format!("format: {other:?} is not json or csv"))
                    .with_param("format"),
            );
        }
        None => request
            .headers()
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv")),
    };
    let report = admin
        .records
        .database()
        .spend(group_by, query.from.as_deref(), query.to.as_deref())
        .await;
    match report {
        Ok(report) if wants_csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report.to_csv(&query.group_by),
        )
            .into_response(),
        Ok(report) => answer(StatusCode::OK, &report),
        Err(error) => failed(&error),
    }
}

/// `?limit=N` (default 100, at most 1,000).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u32>,
}

pub(super) async fn audit(admin: Admin, request: Request) -> Response {
    let query: AuditQuery = match query(&request) {
        Ok(query) => query,
        Err(refused) => return fail(refused),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1_000);
    match admin.records.database().audit(limit).await {
        Ok(entries) => answer(StatusCode::OK, &json!({ "data": entries })),
        Err(error) => failed(&error),
    }
}

/// The request's query string read into `T`, or a 400 saying what is wrong.
pub(super) fn query<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    serde_urlencoded::from_str(request.uri().query().unwrap_or(""))
        .map_err(|error| ApiError::invalid(format!("the query string: {error}")))
}

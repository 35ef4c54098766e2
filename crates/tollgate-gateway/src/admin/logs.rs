//! `/admin/logs`: the call log's records, found by key, team, model, status and time, a page at a
//! time; and `/admin/logs/{request_id}`, one call's record.

use axum::{
    extract::{Path, Request},
    response::Response,
};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tollgate_control::CallFilter;

use super::{Admin, answer, fail, failed, not_found, spend::query};
use crate::error::ApiError;

/// `?key=&team=&model=&status=&from=RFC3339&to=RFC3339&limit=N&offset=N`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    key: Option<String>,
    team: Option<String>,
    model: Option<String>,
    status: Option<u16>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// The most records one page holds.
const MOST: u32 = 1_000;

pub(super) async fn list(admin: Admin, request: Request) -> Response {
    let query: LogsQuery = match query(&request) {
        Ok(query) => query,
        Err(refused) => return fail(refused),
    };
    if let Err(refused) = in_database(&admin) {
        return fail(refused);
    }
    let mut filter = CallFilter::default();
    filter.key = query.key;
    filter.team = query.team;
    filter.model = query.model;
    filter.status = query.status;
    for (name, given, into) in [
        ("from", &query.from, &mut filter.from),
        ("to", &query.to, &mut filter.to),
    ] {
        if let Some(text) = given {
            match tollgate::log::parse_time(text) {
                Ok(at) => *into = Some(at),
                Err(_) => {
                    return fail(
                        ApiError::invalid(format!(
                            "{name}: {text:?} is not a time such as 2026-12-05T12:00:00Z"
                        ))
                        .with_param(name),
                    );
                }
            }
        }
    }
    let limit = query.limit.unwrap_or(100).clamp(1, MOST);
    let offset = query.offset.unwrap_or(0);
    let database = admin.records.database();
    // One more than asked: whether there is a next page.
    match database.calls(&filter, limit + 1, offset).await {
        Ok(mut records) => {
            let more = records.len() > limit as usize;
            records.truncate(limit as usize);
            let next = more.then(|| offset + limit);
            answer(
                StatusCode::OK,
                &json!({ "data": records, "next_offset": next }),
            )
        }
        Err(error) => failed(&error),
    }
}

pub(super) async fn one(admin: Admin, Path(request_id): Path<String>) -> Response {
    // The latest calls are in memory, and the only home of a record without a database sink.
    let logs = admin.gateway.call_logs().cloned();
    if let Some(found) = logs.as_ref().and_then(|logs| {
        logs.recent(usize::MAX)
            .into_iter()
            .find(|record| *record.request_id == *request_id)
    }) {
        return answer(StatusCode::OK, &*found);
    }
    if in_database(&admin).is_err() {
        return not_found("call with this id among the latest (the log has no database sink)");
    }
    match admin.records.database().call(&request_id).await {
        Ok(Some(record)) => answer(StatusCode::OK, &record),
        Ok(None) => not_found("call with this id"),
        Err(error) => failed(&error),
    }
}

/// Refuses a query the call log cannot answer: without a `database` sink no call is in the table.
fn in_database(admin: &Admin) -> Result<(), ApiError> {
    match admin.gateway.call_logs() {
        Some(logs) if logs.in_database => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "the call log has no database sink: add `{ kind: database }` to `logs.sinks` to query it",
        )),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "the gateway keeps no call log: add a `logs` section with a `{ kind: database }` sink",
        )),
    }
}

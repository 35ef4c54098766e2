//! `/admin/`: the control plane over HTTP. Keys, teams, spend, the call log and the audit log of the records
//! the gateway serves, opened by the admin key (`gateway.admin_key_hash`) or a record key made
//! with `admin: true`, every error in one JSON shape (OpenAI's). The routes are described by
//! `/admin/openapi.json`, which the tests check against them.

mod keys;
mod logs;
mod spend;
mod teams;

use std::sync::Arc;

use axum::{
    Router,
    extract::FromRequestParts,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use tollgate_core::{ErrorKind, LlmError};

use crate::{
    call::presented_key,
    error::{ApiError, Dialect},
    keys::matches,
    records::Records,
    state::Gateway,
};

/// The OpenAPI document of these routes.
const OPENAPI: &str = include_str!("openapi.json");

/// The admin routes, for the gateway's router.
pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/admin/keys", get(keys::list).post(keys::create))
        .route(
            "/admin/keys/{id}",
            get(keys::one).patch(keys::update).delete(keys::revoke),
        )
        .route("/admin/keys/{id}/rotate", post(keys::rotate))
        .route("/admin/keys/{id}/revoke", post(keys::revoke))
        .route("/admin/teams", get(teams::list).post(teams::create))
        .route(
            "/admin/teams/{name}",
            get(teams::one).patch(teams::update).delete(teams::delete),
        )
        .route("/admin/spend", get(spend::spend))
        .route("/admin/audit", get(spend::audit))
        .route("/admin/logs", get(logs::list))
        .route("/admin/logs/{request_id}", get(logs::one))
        .route("/admin/openapi.json", get(openapi))
}

async fn openapi(_admin: Admin) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A request that presented an admin key: who it is (for the audit log), and the records.
pub(crate) struct Admin {
    /// `admin` for the configuration's admin key; a record key's id.
    actor: String,
    records: Arc<Records>,
    gateway: Gateway,
}

impl Admin {
    /// Reads the records again at once, so a change made here is served here without waiting
    /// for the next poll (other processes see it at theirs).
    async fn changed(&self) {
        if let Err(error) = self.gateway.sync_records(&self.records).await {
            tracing::warn!(target: "tollgate::admin", %error, "the records were not read again after a change");
        }
    }
}

impl FromRequestParts<Gateway> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, Response> {
        let live = gateway.live();
        let presented = presented_key(&parts.headers);
        let file_admin = match (&live.admin, presented) {
            (Some(admin), Some(key)) => matches(admin, key),
            _ => false,
        };
        let actor = if file_admin {
            "admin".to_owned()
        } else {
            match presented.and_then(|key| gateway.find_key(&live, key)) {
                Some(key) if key.admin => key.name.to_string(),
                Some(_) => {
                    return Err(fail(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "permission_error",
                        "this key does not open the admin API: use the admin key or a key made with `admin: true`",
                    )));
                }
                None => return Err(fail(ApiError::unauthorized())),
            }
        };
        let Some(records) = gateway.records() else {
            return Err(fail(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "the gateway keeps no records: start it with `tollgate serve`, or call Gateway::open_records",
            )));
        };
        Ok(Self {
            actor,
            records,
            gateway: gateway.clone(),
        })
    }
}

/// Refuses limits for a key or team (`scope`) this gateway could not keep: when its limiter has
/// no such scope (a Redis Cluster without `redis.hash_tag_scope`), or a budget with no prices
/// to count it in. They would be stored and never kept, or refuse every call.
fn check_limits(
    admin: &Admin,
    scope: &str,
    limits: Option<&tollgate::Limits>,
) -> Result<(), ApiError> {
    let Some(limits) = limits else {
        return Ok(());
    };
    let live = admin.gateway.live();
    let kept = live
        .stack
        .limiter()
        .is_some_and(|l| l.scope(scope).is_some());
    if !kept {
        return Err(ApiError::invalid(
            "limits: this gateway cannot keep limits on keys and teams: its limiter is on a Redis Cluster without redis.hash_tag_scope (set it to `tenant`)",
        )
        .with_param("limits"));
    }
    for (i, budget) in limits.budgets.iter().enumerate() {
        if let Some(degrade) = &budget.degrade
            && !live.config.stack.roles.contains_key(&degrade.to)
        {
            let field = format!("limits.budgets[{i}].degrade.to");
            return Err(ApiError::invalid(format!(
                "{field}: no role {:?} in the configuration",
                degrade.to
            ))
            .with_param(field));
        }
    }
    if limits.has_budget() && live.config.stack.prices().is_empty() {
        return Err(ApiError::invalid(
            "limits: a budget counts dollars, and this gateway prices no model (its configuration turns the catalog off and has no `pricing` of its own)",
        )
        .with_param("limits"));
    }
    Ok(())
}

/// `error` as a response.
fn fail(error: ApiError) -> Response {
    error.into_response(Dialect::OpenAi)
}

/// A records' error as a response: its own words (the control crate's, which never hold a
/// secret), with the status its kind means.
fn failed(error: &LlmError) -> Response {
    let (status, kind) = match error.kind() {
        ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request_error"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "api_error"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
    };
    fail(ApiError::new(status, kind, error.message()))
}

fn not_found(what: &str) -> Response {
    fail(
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no {what}"),
        )
        .with_code("not_found"),
    )
}

/// A JSON body read into `T`, or a 400 naming the field at fault.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut reader).map_err(|error| {
        let path = error.path().to_string();
        let message = format!("{}: {}", path, error.inner());
        ApiError::invalid(message).with_param(path)
    })
}

/// `value` as a JSON answer with `status`.
fn answer(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

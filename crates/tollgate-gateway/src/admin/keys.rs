//! `/admin/keys`: make (the secret is in the answer, once), list, read, change, rotate and revoke
//! the records' keys. No answer holds a stored secret or hash.

use std::time::Duration;

use axum::{extract::Path, response::Response};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tollgate_control::{KeyChange, NewKey};

use tollgate::ratelimit::PRINCIPAL_SCOPE;

use super::{Admin, answer, body, check_limits, fail, failed, not_found};
use crate::error::ApiError;

/// How long a rotated key's old secret keeps working when the call does not say.
const DEFAULT_GRACE: Duration = Duration::from_secs(3_600);

pub(super) async fn list(admin: Admin) -> Response {
    match admin.records.database().keys().await {
        Ok(keys) => answer(StatusCode::OK, &json!({ "data": keys })),
        Err(error) => failed(&error),
    }
}

pub(super) async fn create(admin: Admin, bytes: Bytes) -> Response {
    let new: NewKey = match body(&bytes) {
        Ok(new) => new,
        Err(refused) => return fail(refused),
    };
    if let Err(refused) = check_uses(&admin, new.roles.as_deref(), &new.models)
        .and_then(|()| check_limits(&admin, PRINCIPAL_SCOPE, new.limits.as_ref()))
    {
        return fail(refused);
    }
    match admin.records.database().create_key(&admin.actor, new).await {
        Ok(created) => {
            admin.changed().await;
            answer(StatusCode::CREATED, &created)
        }
        Err(error) => failed(&error),
    }
}

pub(super) async fn one(admin: Admin, Path(id): Path<String>) -> Response {
    match admin.records.database().key(&id).await {
        Ok(Some(key)) => answer(StatusCode::OK, &key),
        Ok(None) => not_found(&format!("key {id:?}")),
        Err(error) => failed(&error),
    }
}

pub(super) async fn update(admin: Admin, Path(id): Path<String>, bytes: Bytes) -> Response {
    let change: KeyChange = match body(&bytes) {
        Ok(change) => change,
        Err(refused) => return fail(refused),
    };
    let roles = change.roles.clone().flatten();
    let models = change.models.clone().unwrap_or_default();
    let limits = change.limits.clone().flatten();
    if let Err(refused) = check_uses(&admin, roles.as_deref(), &models)
        .and_then(|()| check_limits(&admin, PRINCIPAL_SCOPE, limits.as_ref()))
    {
        return fail(refused);
    }
    let updated = admin
        .records
        .database()
        .update_key(&admin.actor, &id, change)
        .await;
    match updated {
        Ok(Some(key)) => {
            admin.changed().await;
            answer(StatusCode::OK, &key)
        }
        Ok(None) => not_found(&format!("key {id:?}")),
        Err(error) => failed(&error),
    }
}

/// What a rotation may say: how long the old secret keeps working (`"1h"`, default an hour).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotation {
    #[serde(default, with = "tollgate_core::duration::option")]
    grace: Option<Duration>,
}

pub(super) async fn rotate(admin: Admin, Path(id): Path<String>, bytes: Bytes) -> Response {
    let rotation: Rotation = if bytes.iter().all(u8::is_ascii_whitespace) {
        Rotation::default()
    } else {
        match body(&bytes) {
            Ok(rotation) => rotation,
            Err(refused) => return fail(refused),
        }
    };
    let grace = rotation.grace.unwrap_or(DEFAULT_GRACE);
    match admin
        .records
        .database()
        .rotate_key(&admin.actor, &id, grace)
        .await
    {
        Ok(Some(rotated)) => {
            admin.changed().await;
            answer(StatusCode::OK, &rotated)
        }
        Ok(None) => not_found(&format!("key {id:?}")),
        Err(error) => failed(&error),
    }
}

pub(super) async fn revoke(admin: Admin, Path(id): Path<String>) -> Response {
    match admin.records.database().revoke_key(&admin.actor, &id).await {
        Ok(Some(key)) => {
            admin.changed().await;
            answer(StatusCode::OK, &key)
        }
        Ok(None) => not_found(&format!("key {id:?}")),
        Err(error) => failed(&error),
    }
}

/// Refuses roles and `provider/model` names the gateway's configuration does not have: a key
/// that names them could never use them.
fn check_uses(admin: &Admin, roles: Option<&[String]>, models: &[String]) -> Result<(), ApiError> {
    let live = admin.gateway.live();
    let stack = &live.config.stack;
    for (i, role) in roles.unwrap_or_default().iter().enumerate() {
        if !stack.roles.contains_key(role) {
            return Err(ApiError::invalid(format!(
                "roles[{i}]: no role {role:?} in the configuration"
            ))
            .with_param(format!("roles[{i}]")));
        }
    }
    for (i, model) in models.iter().enumerate() {
        let provider = model.split_once('/').map_or("", |(provider, _)| provider);
        if !stack.providers.contains_key(provider) {
            return Err(ApiError::invalid(format!(
                "models[{i}]: no provider {provider:?} in the configuration (write `provider/model` or `provider/*`)"
            ))
            .with_param(format!("models[{i}]")));
        }
    }
    Ok(())
}

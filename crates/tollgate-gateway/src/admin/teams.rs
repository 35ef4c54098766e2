//! `/admin/teams`: make, list, read, change and delete the records' teams (a team with keys is
//! not deleted).

use axum::{extract::Path, response::Response};
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;
use tollgate_control::{NewTeam, TeamChange};

use tollgate::ratelimit::TENANT_SCOPE;

use super::{Admin, answer, body, check_limits, fail, failed, not_found};

pub(super) async fn list(admin: Admin) -> Response {
    match admin.records.database().teams().await {
        Ok(teams) => answer(StatusCode::OK, &json!({ "data": teams })),
        Err(error) => failed(&error),
    }
}

pub(super) async fn create(admin: Admin, bytes: Bytes) -> Response {
    let new: NewTeam = match body(&bytes) {
        Ok(new) => new,
        Err(refused) => return fail(refused),
    };
    if let Err(refused) = check_limits(&admin, TENANT_SCOPE, new.limits.as_ref()) {
        return fail(refused);
    }
    match admin
        .records
        .database()
        .create_team(&admin.actor, new)
        .await
    {
        Ok(team) => {
            admin.changed().await;
            answer(StatusCode::CREATED, &team)
        }
        Err(error) => failed(&error),
    }
}

pub(super) async fn one(admin: Admin, Path(name): Path<String>) -> Response {
    match admin.records.database().team(&name).await {
        Ok(Some(team)) => answer(StatusCode::OK, &team),
        Ok(None) => not_found(&format!("team {name:?}")),
        Err(error) => failed(&error),
    }
}

pub(super) async fn update(admin: Admin, Path(name): Path<String>, bytes: Bytes) -> Response {
    let change: TeamChange = match body(&bytes) {
        Ok(change) => change,
        Err(refused) => return fail(refused),
    };
    if let Err(refused) = check_limits(
        &admin,
        TENANT_SCOPE,
        change.limits.as_ref().and_then(Option::as_ref),
    ) {
        return fail(refused);
    }
    let updated = admin
        .records
        .database()
        .update_team(&admin.actor, &name, change)
        .await;
    match updated {
        Ok(Some(team)) => {
            admin.changed().await;
            answer(StatusCode::OK, &team)
        }
        Ok(None) => not_found(&format!("team {name:?}")),
        Err(error) => failed(&error),
    }
}

pub(super) async fn delete(admin: Admin, Path(name): Path<String>) -> Response {
    match admin
        .records
        .database()
        .delete_team(&admin.actor, &name)
        .await
    {
        Ok(true) => {
            admin.changed().await;
            answer(StatusCode::OK, &json!({ "deleted": name }))
        }
        Ok(false) => not_found(&format!("team {name:?}")),
        Err(error) => failed(&error),
    }
}

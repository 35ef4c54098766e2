//! The admin API through the real binary: every route refuses what is not an admin key; keys and
//! teams made, changed, rotated and revoked over it take effect at once; spend and the audit log
//! read back exactly; and no secret is ever shown again, logged or stored.

mod support;

use serde_json::{Value, json};
use support::*;
use tollgate_testkit::TestDatabase;

const ADMIN: &str = "tg-admin-secret";

fn admin_config(upstream: &Upstream, more: &str) -> String {
    config(
        upstream,
        &format!(
            "gateway: {{ admin_key_hash: \"{}\" }}\n{more}",
            tollgate_gateway::hash_key(ADMIN)
        ),
    )
}

/// Where the records live for each run: in memory (no `database` section), a SQLite file, and a
/// real PostgreSQL when one is installed (required in CI); each with its `database` section.
fn homes() -> Vec<(Option<TestDatabase>, String)> {
    let mut homes = vec![(None, String::new())];
    for home in TestDatabase::each("admin") {
        let section = format!("database: {{ url: \"{}\" }}", home.url());
        homes.push((Some(home), section));
    }
    homes
}

async fn send(
    gateway: &GatewayProcess,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(method.parse().unwrap(), format!("{}{path}", gateway.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_no_key_a_callers_key_and_a_wrong_key() {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&admin_config(&upstream, "")).await;
    let (status, document) = send(&gateway, "GET", "/admin/openapi.json", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, methods) in paths {
        let path = path
            .replace("{id}", "key_0000000000000000")
            .replace("{name}", "acme")
            .replace("{request_id}", "req_1");
        for method in methods.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            for (key, expected) in [(None, 401), (Some(ALICE), 403), (Some("tg-wrong"), 401)] {
                let (status, body) = send(&gateway, &method, &path, key, Some(json!({}))).await;
                assert_eq!(status, expected, "{method} {path} with {key:?}: {body}");
                assert!(body["error"]["message"].is_string(), "{body}");
            }
            checked += 1;
        }
    }
    // Every route the gateway serves under /admin/ is in the document, and nothing else is.
    assert_eq!(checked, 17);
    let (status, _) = send(&gateway, "GET", "/admin/nothing", Some(ADMIN), None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_teams_are_run_over_the_api_and_no_secret_is_shown_again() {
    for (_home, database) in homes() {
        keys_and_teams(&database).await;
    }
}

async fn keys_and_teams(database: &str) {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&admin_config(&upstream, database)).await;
    let admin = |method: &'static str, path: String, body: Option<Value>| {
        let gateway = &gateway;
        async move { send(gateway, method, &path, Some(ADMIN), body).await }
    };

    let (status, team) = admin(
        "POST",
        "/admin/teams".into(),
        Some(json!({ "name": "search" })),
    )
    .await;
    assert_eq!((status, team["name"].as_str()), (201, Some("search")));

    // Made: the secret is in this answer only, and the key works at once on this process.
    let (status, made) = admin(
        "POST",
        "/admin/keys".into(),
        Some(json!({ "name": "search-backend", "team": "search", "roles": ["default"] })),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(made.get("hash").is_none());
    assert_eq!(chat(&gateway, &secret, &ask("hi")).await.status(), 200);

    // Changed: one call a minute now, counted from this change.
    let (status, changed) = admin(
        "PATCH",
        format!("/admin/keys/{id}"),
        Some(json!({ "limits": { "per_minute": 1 }, "tags": ["prod"] })),
    )
    .await;
    assert_eq!((status, &changed["tags"]), (200, &json!(["prod"])));
    let statuses = [
        chat(&gateway, &secret, &ask("a")).await.status().as_u16(),
        chat(&gateway, &secret, &ask("b")).await.status().as_u16(),
    ];
    assert_eq!(statuses, [200, 429]);

    // Mistakes are refused by field, in one error shape.
    for (body, param) in [
        (
            json!({ "name": "x", "team": "search", "roles": ["nope"] }),
            "roles[0]",
        ),
        (
            json!({ "name": "x", "team": "search", "models": ["nowhere/m"] }),
            "models[0]",
        ),
        (
            json!({ "name": "x", "team": "search", "colour": "red" }),
            ".",
        ),
        (
            json!({ "name": "x", "team": "search", "limits": { "budgets": [
                { "limit": "1", "period": "day", "degrade": { "below": "10%", "to": "nowhere" } }
            ] } }),
            "limits.budgets[0].degrade.to",
        ),
    ] {
        let (status, refused) = admin("POST", "/admin/keys".into(), Some(body)).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["error"]["type"], "invalid_request_error");
        if param != "." {
            assert_eq!(refused["error"]["param"], param);
        }
    }
    let (status, _) = admin(
        "POST",
        "/admin/keys".into(),
        Some(json!({ "name": "x", "team": "nobody" })),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = admin("GET", "/admin/keys/key_ffffffffffffffff".into(), None).await;
    assert_eq!(status, 404);

    // Rotated: the new secret works; revoked: nothing does.
    let (status, rotated) = admin(
        "POST",
        format!("/admin/keys/{id}/rotate"),
        Some(json!({ "grace": "1h" })),
    )
    .await;
    assert_eq!(status, 200);
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let (status, revoked) = admin("DELETE", format!("/admin/keys/{id}"), None).await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_string());
    for key in [&secret, &new_secret] {
        assert_eq!(chat(&gateway, key, &ask("c")).await.status(), 401);
    }
    // A team with keys is kept.
    let (status, _) = admin("DELETE", "/admin/teams/search".into(), None).await;
    assert_eq!(status, 400);

    // No secret in a listing, the audit log, or the logs; the audit names who did what.
    let (_, listed) = admin("GET", "/admin/keys".into(), None).await;
    let (_, audit) = admin("GET", "/admin/audit".into(), None).await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key.revoke",
            "key.rotate",
            "key.update",
            "key.create",
            "team.create"
        ]
    );
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "admin")
    );
    let shown = format!("{listed}{audit}{}", gateway.logs());
    for secret in [&secret, &new_secret] {
        assert!(!shown.contains(secret.as_str()));
    }
    assert!(!shown.contains("sha256:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_reads_back_what_the_upstream_billed_by_key_team_model_and_day() {
    for (_home, database) in homes() {
        spend_by_group(&database).await;
    }
}

async fn spend_by_group(database: &str) {
    let upstream = Upstream::start().await;
    let gateway = GatewayProcess::start(&admin_config(&upstream, database)).await;
    let admin = |method: &'static str, path: String, body: Option<Value>| {
        let gateway = &gateway;
        async move { send(gateway, method, &path, Some(ADMIN), body).await }
    };
    admin(
        "POST",
        "/admin/teams".into(),
        Some(json!({ "name": "search" })),
    )
    .await;
    let mut secrets = Vec::new();
    for name in ["one", "two"] {
        let (_, made) = admin(
            "POST",
            "/admin/keys".into(),
            Some(json!({ "name": name, "team": "search", "admin": name == "two" })),
        )
        .await;
        secrets.push(made["key"].as_str().unwrap().to_owned());
    }
    // Three calls on one key, two on the other: each reports 10 prompt and 5 answer tokens, at
    // $1 and $2 per million, so 20 micro-dollars.
    for (secret, calls) in secrets.iter().zip([3, 2]) {
        for _ in 0..calls {
            assert_eq!(chat(&gateway, secret, &ask("hi")).await.status(), 200);
        }
    }
    // A key made with `admin: true` opens the API too.
    let mut report = Value::Null;
    for _ in 0..600 {
        let (status, read) = send(
            &gateway,
            "GET",
            "/admin/spend?group_by=team",
            Some(&secrets[1]),
            None,
        )
        .await;
        assert_eq!(status, 200);
        report = read;
        if report["total"]["calls"] == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(report["groups"]["search"]["calls"], 5, "{report}");
    assert_eq!(report["groups"]["search"]["cost_micros"], 100);
    assert_eq!(report["groups"]["search"]["input_tokens"], 50);
    assert_eq!(report["groups"]["search"]["output_tokens"], 25);
    let (_, by_key) = admin("GET", "/admin/spend?group_by=key".into(), None).await;
    let mut calls: Vec<u64> = by_key["groups"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["calls"].as_u64().unwrap())
        .collect();
    calls.sort_unstable();
    assert_eq!(calls, [2, 3]);
    let (_, by_model) = admin("GET", "/admin/spend?group_by=model".into(), None).await;
    assert_eq!(by_model["groups"]["up-model"]["cost_micros"], 100);
    // By day: today's, the only one (a call made just past midnight UTC would start another).
    let (_, by_day) = admin("GET", "/admin/spend?group_by=day".into(), None).await;
    assert_eq!(by_day["total"]["cost_micros"], 100);
    let days: Vec<&Value> = by_day["groups"].as_object().unwrap().values().collect();
    assert!(!days.is_empty() && days.len() <= 2, "{by_day}");

    let response = client()
        .get(format!(
            "{}/admin/spend?group_by=model&format=csv",
            gateway.url
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        response.text().await.unwrap(),
        "model,calls,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost_usd\n\
         up-model,5,50,0,0,25,0,0.000100\n\
         total,5,50,0,0,25,0,0.000100\n"
    );
    let (status, refused) = admin("GET", "/admin/spend?group_by=colour".into(), None).await;
    assert_eq!(status, 400, "{refused}");
    let (status, _) = admin(
        "GET",
        "/admin/spend?group_by=day&from=yesterday".into(),
        None,
    )
    .await;
    assert_eq!(status, 400);
}

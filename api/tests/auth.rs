//! Keys: no key or a bad one is 401, a user on an admin endpoint 403; keys are stored only as
//! their SHA-256; revoked keys stop working; the settings' admin key works.

mod common;

use axum::http::{Method, StatusCode};
use common::{settings, setup, setup_with, TEST_QUEUE};
use serde_json::{json, Value};
use taskfleet_api::auth::sha256_hex;

/// Every route that needs a key, with a body where it takes one.
fn keyed_routes(id: &str) -> Vec<(Method, String, Option<Value>)> {
    let mut v = vec![
        (Method::GET, "/api/tasks/types".to_string(), None),
        (
            Method::POST,
            "/api/tasks".to_string(),
            Some(json!({"task_type": TEST_QUEUE, "request": {}})),
        ),
        (Method::GET, "/api/tasks".to_string(), None),
        (Method::GET, format!("/api/tasks/{id}"), None),
        (Method::GET, format!("/api/tasks/{id}/events"), None),
        (
            Method::GET,
            format!("/api/tasks/{id}/artifacts/a.txt"),
            None,
        ),
        (Method::POST, format!("/api/tasks/{id}/cancel"), None),
        (Method::GET, "/api/tasks/queue/status".to_string(), None),
        (Method::GET, "/api/tasks/queue/list".to_string(), None),
    ];
    for (path, _, body) in common::valid_typed_requests() {
        v.push((Method::POST, path.to_string(), Some(body)));
    }
    v.extend(admin_routes());
    v
}

fn admin_routes() -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::POST, "/api/tasks/queue/start".to_string(), None),
        (
            Method::POST,
            "/api/tasks/queue/stop".to_string(),
            Some(json!({"task_type": TEST_QUEUE})),
        ),
        (
            Method::POST,
            "/api/tasks/queue/cleanup".to_string(),
            Some(json!({"max_processing_time_minutes": 60})),
        ),
    ]
}

#[tokio::test]
async fn every_keyed_route_refuses_no_key_and_a_bad_key_with_401() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({})).await;
    for (method, path, body) in keyed_routes(&id) {
        let r = api.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without key"
        );
        assert_eq!(r.code(), "unauthorized");
        let r = api
            .call(
                method.clone(),
                &path,
                Some("tfk_not-a-real-key"),
                body.clone(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} bad key"
        );
    }
    // Not a Bearer scheme.
    let req = axum::http::Request::get("/api/tasks")
        .header("authorization", format!("Basic {}", api.user))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(api.send(req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_routes_refuse_users_with_403_and_serve_admins() {
    let api = setup().await;
    for (method, path, body) in admin_routes() {
        let r = api.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} no key");
        let r = api
            .call(method.clone(), &path, Some(&api.user), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} user");
        assert_eq!(r.code(), "forbidden");
        let r = api
            .call(method.clone(), &path, Some(&api.admin), body.clone())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path} admin: {}", r.json());
    }
}

#[tokio::test]
async fn the_settings_admin_key_is_an_admin() {
    let (mut s, dir) = settings();
    s.auth.admin_key = Some("let-me-in-0123456789abcdef".into());
    let api = setup_with(s, dir).await;
    let r = api
        .call(
            Method::POST,
            "/api/tasks/queue/stop",
            Some("let-me-in-0123456789abcdef"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let r = api
        .call(
            Method::POST,
            "/api/tasks/queue/stop",
            Some("let-me-in-0123456789abcdeF"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_are_stored_only_as_their_sha256() {
    let api = setup().await;
    let stored = taskfleet::testing::dump(&api.broker).await;
    let names: Vec<&str> = stored.iter().map(|(k, _, _)| k.as_str()).collect();
    assert!(names.contains(&api.broker.keys().apikey(&sha256_hex(&api.user)).as_str()));
    for (k, _, contents) in &stored {
        assert!(!k.contains(&api.user), "a key name holds the key");
        assert!(
            contents.iter().all(|v| !v.contains(&api.user)),
            "{k} holds the key"
        );
    }
    let listed = api.broker.api_keys().await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed
        .iter()
        .any(|k| k.account_id == "acme" && k.role == taskfleet::Role::User));
    assert!(listed
        .iter()
        .any(|k| k.account_id == "acme" && k.role == taskfleet::Role::AccountAdmin));
}

#[tokio::test]
async fn a_revoked_key_stops_working() {
    // Without the key cache, at once (with it, within `api.key_cache_ms`: see the cache's
    // own test).
    let (mut s, dir) = common::settings();
    s.api.key_cache_ms = 0;
    let api = common::setup_with(s, dir).await;
    assert_eq!(
        api.get("/api/tasks", &api.other).await.status,
        StatusCode::OK
    );
    let id = &sha256_hex(&api.other)[..12];
    api.broker.revoke_api_key(id).await.unwrap();
    assert_eq!(
        api.get("/api/tasks", &api.other).await.status,
        StatusCode::UNAUTHORIZED
    );
    api.broker.revoke_api_key(&api.user).await.unwrap();
    assert_eq!(
        api.get("/api/tasks", &api.user).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(api.broker.revoke_api_key(&api.user).await.is_err());
    assert!(api.broker.revoke_api_key("abc").await.is_err());
}

#[tokio::test]
async fn a_failed_authentication_waits_and_only_so_many_wait_at_once() {
    use std::sync::Arc;
    use std::time::Duration;
    use taskfleet_api::auth::FailureDelay;
    use tower::ServiceExt;
    let mut api = setup().await;
    // One failure may wait, for longer than this test runs.
    api.state.auth_failures = Arc::new(FailureDelay::new(Duration::from_secs(3600), 1));
    let router = taskfleet_api::app(api.state.clone());
    let bad = |key: &str| {
        axum::http::Request::get("/api/tasks")
            .header("authorization", format!("Bearer {key}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let first = tokio::spawn(router.clone().oneshot(bad("tfk_wrong")));
    common::eventually_true("the first failure is waiting", || {
        api.state.auth_failures.waiting() == 1
    })
    .await;
    assert!(
        !first.is_finished(),
        "a failed authentication is not answered at once"
    );
    // The one waiting place is taken: the next failure is answered at once (a flood of bad keys
    // cannot pile up waiting responses), and still 401.
    let second = router.clone().oneshot(bad("tfk_also_wrong")).await.unwrap();
    assert_eq!(second.status(), StatusCode::UNAUTHORIZED);
    let none = router
        .clone()
        .oneshot(
            axum::http::Request::get("/api/tasks")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    // A valid key is never delayed, waiting failures or not.
    let ok = router
        .clone()
        .oneshot(
            axum::http::Request::get("/api/tasks")
                .header("authorization", format!("Bearer {}", api.user))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(!first.is_finished());
    first.abort();
}

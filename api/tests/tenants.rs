//! Tenants: another account's task is answered exactly like a missing one on every route that
//! takes a task id, nothing changes, and no list shows it.

mod common;

use axum::http::{Method, StatusCode};
use common::{setup, TEST_QUEUE};
use serde_json::json;

const MISSING: &str = "0190f3c2-0000-7000-8000-000000000000";

fn id_routes(id: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, format!("/api/tasks/{id}")),
        (Method::GET, format!("/api/tasks/{id}/events")),
        (Method::GET, format!("/api/tasks/{id}/artifacts/out.txt")),
        (Method::POST, format!("/api/tasks/{id}/cancel")),
        (Method::POST, format!("/api/tasks/{id}/retry")),
    ]
}

#[tokio::test]
async fn another_accounts_task_is_404_byte_identical_to_a_missing_one_and_unchanged() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    api.state
        .artifacts
        .put(&id, "out.txt", b"secret".to_vec())
        .await
        .unwrap();
    let before = api.broker.get(&id).await.unwrap().unwrap();
    for ((method, theirs), (_, missing)) in id_routes(&id).into_iter().zip(id_routes(MISSING)) {
        let a = api
            .call(method.clone(), &theirs, Some(&api.other), None)
            .await;
        let b = api
            .call(method.clone(), &missing, Some(&api.other), None)
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {theirs}");
        assert_eq!(
            a.bytes, b.bytes,
            "{method} {theirs} differs from a missing task"
        );
        let same_headers = |h: &axum::http::HeaderMap| {
            let mut v: Vec<(String, String)> = h
                .iter()
                .filter(|(k, _)| k.as_str() != "x-request-id")
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(same_headers(&a.headers), same_headers(&b.headers));
    }
    let after = api.broker.get(&id).await.unwrap().unwrap();
    assert_eq!(before, after, "another account changed the task");
    // The owner still sees and can read it.
    let r = api
        .get(&format!("/api/tasks/{id}/artifacts/out.txt"), &api.user)
        .await;
    assert_eq!(r.bytes, b"secret");
}

#[tokio::test]
async fn lists_never_show_another_accounts_tasks() {
    let api = setup().await;
    let mine = api.enqueue_test(&api.user, json!({})).await;
    let theirs = api.enqueue_test(&api.other, json!({})).await;
    let r = api.get("/api/tasks", &api.other).await;
    let ids: Vec<&str> = r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .map(|s| if s == theirs { "theirs" } else { "other" })
        .collect();
    assert_eq!(ids, vec!["theirs"]);
    let q = api.queue_list_ids(&api.other).await;
    assert_eq!(q, vec![theirs.clone()]);
    // An admin sees both, in claim order.
    let q = api.queue_list_ids(&api.admin).await;
    assert_eq!(q, vec![mine, theirs]);
    let r = api
        .get(
            &format!("/api/tasks/queue/list?task_type={TEST_QUEUE}"),
            &api.user,
        )
        .await;
    assert_eq!(r.json()["tasks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_admin_may_read_and_cancel_any_accounts_task() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({})).await;
    let r = api.get(&format!("/api/tasks/{id}"), &api.admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.cancel(&id, &api.admin).await;
    assert_eq!(r.status, StatusCode::OK);
}

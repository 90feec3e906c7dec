//! POST /api/tasks/retry (issue 13, part 4): an admin retries the failed (or cancelled) tasks
//! of a filter (type, finish time), oldest first, bounded per call, `more` saying whether to
//! call again; anyone else is refused; bad filters name their field.

mod common;

use axum::http::StatusCode;
use common::{setup, Api, TEST_QUEUE};
use serde_json::{json, Value};
use taskfleet::TaskStatus;

/// A test task that failed for good at `at` (ms).
async fn failed_at(api: &Api, at: i64) -> String {
    let id = api.enqueue_test(&api.user, json!({"op": "fail"})).await;
    let c = api.broker.claim(&[TEST_QUEUE], 1, at - 1).await.unwrap();
    assert_eq!(c[0].id, id);
    api.broker
        .fail_one(TEST_QUEUE, &id, &c[0].lease, "gave up", true, at)
        .await
        .unwrap();
    assert_eq!(api.broker.status_of(&id).await.unwrap(), TaskStatus::Failed);
    id
}

async fn bulk(api: &Api, key: &str, body: Value) -> common::Reply {
    api.post("/api/tasks/retry", key, body).await
}

fn ids(v: &Value) -> Vec<String> {
    v["task_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_admin_retries_failed_tasks_by_time_range_bounded_per_call() {
    let api = setup().await;
    let t0 = api.now();
    let mut failed = Vec::new();
    for i in 0..5 {
        failed.push(failed_at(&api, t0 + i * 1_000).await);
    }
    // A completed and a queued task are never touched.
    let queued = api.enqueue_test(&api.user, json!({})).await;

    // Only those that finished in [t0 + 1 s, t0 + 3 s], two per call, oldest first.
    let filter =
        json!({"task_type": TEST_QUEUE, "since": t0 + 1_000, "until": t0 + 3_000, "limit": 2});
    let r = bulk(&api, &api.admin, filter.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let first = r.json();
    assert_eq!(first["retried"], 2);
    assert_eq!(ids(&first), failed[1..3].to_vec());
    assert_eq!(first["more"], true);
    let second = bulk(&api, &api.admin, filter.clone()).await.json();
    assert_eq!(ids(&second), vec![failed[3].clone()]);
    assert_eq!(second["more"], false);
    let none = bulk(&api, &api.admin, filter).await.json();
    assert_eq!(
        (none["retried"].clone(), none["more"].clone()),
        (json!(0), json!(false))
    );
    for id in &failed[1..4] {
        let t = api.broker.get_required(id).await.unwrap();
        assert_eq!((t.status, t.attempts), (TaskStatus::Queued, 0));
        assert_eq!(t.previous_errors[0].error, "gave up");
    }
    for id in [&failed[0], &failed[4]] {
        assert_eq!(api.broker.status_of(id).await.unwrap(), TaskStatus::Failed);
    }
    assert_eq!(
        api.broker.status_of(&queued).await.unwrap(),
        TaskStatus::Queued
    );

    // Without a filter: every failed task of every type (the default limit is 100).
    let rest = bulk(&api, &api.admin, json!({})).await.json();
    assert_eq!(ids(&rest), vec![failed[0].clone(), failed[4].clone()]);
}

#[tokio::test]
async fn cancelled_tasks_are_retried_when_asked_for() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({})).await;
    assert_eq!(api.cancel(&id, &api.user).await.status, StatusCode::OK);
    let failed_only = bulk(&api, &api.admin, json!({})).await.json();
    assert_eq!(failed_only["retried"], 0);
    let r = bulk(&api, &api.admin, json!({"status": "cancelled"}))
        .await
        .json();
    assert_eq!(ids(&r), vec![id.clone()]);
    assert_eq!(api.broker.status_of(&id).await.unwrap(), TaskStatus::Queued);
}

#[tokio::test]
async fn only_an_admin_may_and_bad_filters_name_their_field() {
    let api = setup().await;
    let id = failed_at(&api, api.now()).await;
    for key in [&api.user, &api.account_admin, &api.other] {
        let r = bulk(&api, key, json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json());
    }
    let cases = [
        (json!({"limit": 0}), StatusCode::BAD_REQUEST, "limit"),
        (json!({"limit": 1001}), StatusCode::BAD_REQUEST, "limit"),
        (
            json!({"since": 2000, "until": 1000}),
            StatusCode::BAD_REQUEST,
            "until",
        ),
        (json!({"since": -1}), StatusCode::BAD_REQUEST, "since"),
        (
            json!({"until": "yesterday"}),
            StatusCode::BAD_REQUEST,
            "until",
        ),
        (
            json!({"status": "completed"}),
            StatusCode::BAD_REQUEST,
            "status",
        ),
        (
            json!({"task_type": "teleport"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "teleport",
        ),
        (
            json!({"typ": "test"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "typ",
        ),
    ];
    for (body, status, field) in cases {
        let r = bulk(&api, &api.admin, body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.json());
        assert!(r.message().contains(field), "{body}: {}", r.message());
    }
    // Nothing was retried by any of them.
    assert_eq!(api.broker.status_of(&id).await.unwrap(), TaskStatus::Failed);
}

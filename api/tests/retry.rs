//! POST /api/tasks/{id}/retry: a failed or cancelled task goes back to its queue with a new
//! attempt budget and its old error kept in `previous_errors`; any other state is 409 and
//! nothing changes; the tasks it started go back with it.

mod common;

use axum::http::{Method, StatusCode};
use common::{setup, Api, TEST_QUEUE};
use serde_json::json;
use taskfleet::TaskStatus;

async fn retry(api: &Api, id: &str, key: &str) -> common::Reply {
    api.call(
        Method::POST,
        &format!("/api/tasks/{id}/retry"),
        Some(key),
        None,
    )
    .await
}

/// A test task that used every attempt and failed with `error`.
async fn failed_task(api: &Api, error: &str) -> String {
    let id = api.enqueue_test(&api.user, json!({"op": "fail"})).await;
    let c = api.broker.claim(&[TEST_QUEUE], 1, api.now()).await.unwrap();
    api.broker
        .fail_one(TEST_QUEUE, &id, &c[0].lease, error, true, api.now())
        .await
        .unwrap();
    assert_eq!(api.broker.status_of(&id).await.unwrap(), TaskStatus::Failed);
    id
}

#[tokio::test]
async fn a_failed_task_goes_back_to_its_queue_with_a_new_budget_and_its_error_kept() {
    let api = setup().await;
    let id = failed_task(&api, "the provider said no").await;
    let r = retry(&api, &id, &api.user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let t = r.json();
    assert_eq!(t["status"], "queued");
    assert_eq!(t["attempts"], 0);
    assert_eq!(t["max_attempts"], 3);
    assert_eq!(t["error"], json!(null));
    assert_eq!(t["finished_at"], json!(null));
    let history = t["previous_errors"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["status"], "failed");
    assert_eq!(history[0]["error"], "the provider said no");
    assert_eq!(history[0]["attempts"], 1);
    // It is in the queue again, claimable, and a worker can finish it this time.
    assert_eq!(api.queue_list_ids(&api.user).await, vec![id.clone()]);
    let c = api.broker.claim(&[TEST_QUEUE], 1, api.now()).await.unwrap();
    assert_eq!((c[0].id.as_str(), c[0].attempt), (id.as_str(), 1));
    api.broker
        .fail_one(TEST_QUEUE, &id, &c[0].lease, "again", true, api.now())
        .await
        .unwrap();
    // A second retry keeps both endings, oldest first.
    let t = retry(&api, &id, &api.user).await.json();
    let errors: Vec<&str> = t["previous_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["the provider said no", "again"]);
    let failed = api
        .get("/api/tasks/queue/list?status=failed", &api.admin)
        .await;
    assert!(failed.json()["tasks"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_cancelled_task_can_be_retried_and_a_live_or_completed_one_cannot() {
    let api = setup().await;
    let cancelled = api.enqueue_test(&api.user, json!({})).await;
    assert_eq!(
        api.cancel(&cancelled, &api.user).await.status,
        StatusCode::OK
    );
    let r = retry(&api, &cancelled, &api.user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["previous_errors"][0]["status"], "cancelled");

    // Queued (the task just retried), processing, completed: 409, nothing changes.
    let r = retry(&api, &cancelled, &api.user).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "conflict");
    assert!(r.message().contains("queued"), "{}", r.message());
    let c = api.broker.claim(&[TEST_QUEUE], 1, api.now()).await.unwrap();
    let before = api.broker.get(&cancelled).await.unwrap();
    let r = retry(&api, &cancelled, &api.user).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(api.broker.get(&cancelled).await.unwrap(), before);
    api.broker
        .complete_one(TEST_QUEUE, &cancelled, &c[0].lease, json!({}), api.now())
        .await
        .unwrap();
    let r = retry(&api, &cancelled, &api.user).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.message().contains("completed"), "{}", r.message());
}

#[tokio::test]
async fn the_tasks_a_retried_task_started_are_retried_with_it() {
    let api = setup().await;
    let parent = api.enqueue_test(&api.user, json!({})).await;
    let c = api.broker.claim(&[TEST_QUEUE], 1, api.now()).await.unwrap();
    let child = api.enqueue_test(&api.user, json!({})).await;
    api.broker
        .set_children(
            TEST_QUEUE,
            &parent,
            &c[0].lease,
            &[(TEST_QUEUE.to_string(), child.clone())],
        )
        .await
        .unwrap();
    // The parent fails for good: its child is cancelled with it.
    api.broker
        .fail_one(TEST_QUEUE, &parent, &c[0].lease, "broken", true, api.now())
        .await
        .unwrap();
    assert_eq!(
        api.broker.status_of(&child).await.unwrap(),
        TaskStatus::Cancelled
    );
    let r = retry(&api, &parent, &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        api.broker.status_of(&child).await.unwrap(),
        TaskStatus::Queued
    );
}

#[tokio::test]
async fn a_retry_is_refused_with_404_for_anyone_who_may_not_see_the_task() {
    let api = setup().await;
    let id = failed_task(&api, "x").await;
    for key in [&api.colleague, &api.other] {
        assert_eq!(retry(&api, &id, key).await.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(api.broker.status_of(&id).await.unwrap(), TaskStatus::Failed);
    let r = retry(&api, &id, &api.account_admin).await;
    assert_eq!(r.status, StatusCode::OK);
}

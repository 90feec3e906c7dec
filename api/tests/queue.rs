//! Queue status, the claim-order list, start/stop and cleanup.

mod common;

use axum::http::{Method, StatusCode};
use common::{setup, TEST_QUEUE};
use serde_json::json;
use taskfleet::{Completion, TaskStatus};

#[tokio::test]
async fn the_queue_list_is_in_claim_order_by_band_then_age() {
    let api = setup().await;
    let mut ids = Vec::new();
    for p in ["low", "normal", "urgent", "high", "urgent", "low"] {
        let b = api
            .enqueue_with(
                &api.user,
                json!({"task_type": TEST_QUEUE, "request": {}, "priority": p}),
            )
            .await;
        ids.push(b["task_id"].as_str().unwrap().to_string());
    }
    let r = api.get("/api/tasks/queue/list", &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
    let got: Vec<(String, u64)> = r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task"]["id"].as_str().unwrap().to_string(),
                t["position"].as_u64().unwrap(),
            )
        })
        .collect();
    let order = [2, 4, 3, 1, 0, 5];
    let expected: Vec<(String, u64)> = order
        .iter()
        .enumerate()
        .map(|(pos, &i)| (ids[i].clone(), pos as u64))
        .collect();
    assert_eq!(got, expected);
    // And that is the order a worker claims them in.
    let now = api.now();
    let claimed: Vec<String> = api
        .broker
        .claim(&[TEST_QUEUE], 10, now)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        claimed,
        expected.into_iter().map(|e| e.0).collect::<Vec<_>>()
    );
    let r = api.get("/api/tasks/queue/list?limit=0", &api.user).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// Registers a live worker (its heartbeat hash exists, on host "box1", pid 42) and a dead one
/// (only in the set).
async fn register_workers(api: &common::Api, now: i64) {
    let live = taskfleet::WorkerInfo {
        id: "w-live".into(),
        host: "box1".into(),
        pid: Some(42),
        types: vec![TEST_QUEUE.into()],
        concurrency: 4,
        started_at: Some(now),
        in_flight: 1,
        last_beat: Some(now),
    };
    api.broker
        .register_worker(&live, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    taskfleet::testing::register_vanished_worker(&api.broker, "w-dead", now - 120_000).await;
}

#[tokio::test]
async fn the_status_counts_states_workers_and_throughput_for_an_admin() {
    let api = setup().await;
    for _ in 0..3 {
        api.enqueue_test(&api.user, json!({})).await;
    }
    let now = api.now();
    let c = api.broker.claim(&[TEST_QUEUE], 2, now).await.unwrap();
    api.broker
        .complete(
            TEST_QUEUE,
            &[Completion {
                id: c[0].id.clone(),
                lease: c[0].lease.clone(),
                result: json!({}),
            }],
            now + 1_000,
        )
        .await
        .unwrap();
    register_workers(&api, now).await;
    let r = api.get("/api/tasks/queue/status", &api.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let b = r.json();
    assert_eq!(b["scope"], "all");
    let test = b["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_type"] == TEST_QUEUE)
        .unwrap()
        .clone();
    assert_eq!(test["counts"]["queued"], 1);
    assert_eq!(test["counts"]["processing"], 1);
    assert_eq!(test["counts"]["completed"], 1);
    assert_eq!(test["completed_last_minute"], 1);
    assert_eq!(test["average_run_ms"], 1_000);
    assert_eq!(test["paused"], false);
    assert_eq!(b["totals"]["queued"], 1);
    assert_eq!(b["completed_last_minute"], 1);
    assert_eq!(b["workers"]["live"], 1);
    assert_eq!(b["workers"]["slots"], 4);
    assert_eq!(b["workers"]["workers"][0]["id"], "w-live");
    assert_eq!(b["workers"]["workers"][0]["host"], "box1");
    assert_eq!(b["workers"]["workers"][0]["pid"], 42);
}

#[tokio::test]
async fn a_user_sees_only_its_own_accounts_counts_and_no_worker_hosts() {
    let api = setup().await;
    // acme: 3 tasks (one processing, one completed, one queued); globex: 5 queued.
    for _ in 0..3 {
        api.enqueue_test(&api.user, json!({})).await;
    }
    let now = api.now();
    let c = api.broker.claim(&[TEST_QUEUE], 2, now).await.unwrap();
    api.broker
        .complete(
            TEST_QUEUE,
            &[Completion {
                id: c[0].id.clone(),
                lease: c[0].lease.clone(),
                result: json!({}),
            }],
            now + 1_000,
        )
        .await
        .unwrap();
    for _ in 0..5 {
        api.enqueue_test(&api.other, json!({})).await;
    }
    register_workers(&api, now).await;

    let r = api.get("/api/tasks/queue/status", &api.user).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let b = r.json();
    assert_eq!(b["scope"], "account");
    let test = b["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_type"] == TEST_QUEUE)
        .unwrap()
        .clone();
    assert_eq!(test["counts"]["queued"], 1, "{b}");
    assert_eq!(test["counts"]["processing"], 1);
    assert_eq!(test["counts"]["completed"], 1);
    assert_eq!(b["totals"]["queued"], 1, "globex's five are not counted");
    // No other account's activity: no global counters or throughput.
    assert_eq!(test["stats"], json!({}));
    assert_eq!(test["completed_last_minute"], json!(null));
    assert_eq!(b["completed_last_minute"], json!(null));
    // The fleet's size, but no host, pid or worker id.
    assert_eq!(b["workers"]["live"], 1);
    assert_eq!(b["workers"]["slots"], 4);
    assert_eq!(
        b["workers"]["in_flight"], 1,
        "the account's own running tasks"
    );
    assert_eq!(b["workers"]["workers"], json!([]));
    let text = String::from_utf8(r.bytes.clone()).unwrap();
    assert!(!text.contains("box1") && !text.contains("w-live"), "{text}");

    let theirs = api.get("/api/tasks/queue/status", &api.other).await.json();
    assert_eq!(theirs["totals"]["queued"], 5);
    assert_eq!(theirs["totals"]["processing"], 0);
    assert_eq!(theirs["totals"]["completed"], 0);
}

#[tokio::test]
async fn stop_pauses_claiming_and_start_resumes_it() {
    let api = setup().await;
    api.enqueue_test(&api.user, json!({})).await;
    let r = api
        .post(
            "/api/tasks/queue/stop",
            &api.admin,
            json!({"task_type": TEST_QUEUE}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"paused": true, "task_types": [TEST_QUEUE]})
    );
    let now = api.now();
    assert!(api
        .broker
        .claim(&[TEST_QUEUE], 1, now)
        .await
        .unwrap()
        .is_empty());
    let status = api.get("/api/tasks/queue/status", &api.user).await.json();
    let test = status["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_type"] == TEST_QUEUE)
        .unwrap()
        .clone();
    assert_eq!(test["paused"], true);
    assert_eq!(status["paused"], false, "only one type is paused");
    let r = api
        .call(
            Method::POST,
            "/api/tasks/queue/start",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["paused"], false);
    assert_eq!(
        api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap().len(),
        1
    );
    let r = api
        .post(
            "/api/tasks/queue/stop",
            &api.admin,
            json!({"task_type": "podcast"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api
        .post(
            "/api/tasks/queue/stop",
            &api.admin,
            json!({"type": TEST_QUEUE}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("type"));
}

#[tokio::test]
async fn cleanup_recovers_only_tasks_processing_longer_than_the_limit() {
    let api = setup().await;
    let old = api.enqueue_test(&api.user, json!({})).await;
    let now = api.now();
    // Claimed twenty minutes ago, its lease renewed just now: a stuck task whose worker
    // still beats.
    let c = api
        .broker
        .claim(&[TEST_QUEUE], 1, now - 20 * 60_000)
        .await
        .unwrap();
    api.broker
        .extend(TEST_QUEUE, &[(c[0].id.clone(), c[0].lease.clone())], now)
        .await
        .unwrap();
    let fresh = api.enqueue_test(&api.user, json!({})).await;
    api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap();
    let r = api
        .post(
            "/api/tasks/queue/cleanup",
            &api.admin,
            json!({"max_processing_time_minutes": 10}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["over_limit"], 1);
    assert_eq!(r.json()["requeued"], json!([old.clone()]));
    assert_eq!(
        api.broker.status_of(&old).await.unwrap(),
        TaskStatus::Queued
    );
    assert_eq!(
        api.broker.status_of(&fresh).await.unwrap(),
        TaskStatus::Processing
    );
    // The stuck worker's lease is void.
    let late = api
        .broker
        .complete_one(TEST_QUEUE, &old, &c[0].lease, json!({}), now + 1)
        .await;
    assert!(late.is_err());
    for bad in [
        json!({"max_processing_time_minutes": 0}),
        json!({"max_processing_time_minutes": "ten"}),
    ] {
        let r = api.post("/api/tasks/queue/cleanup", &api.admin, bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.message().starts_with("max_processing_time_minutes"));
    }
}

#[tokio::test]
async fn cleanup_without_a_body_uses_the_seeds_thirty_minutes() {
    let api = setup().await;
    let now = api.now();
    // One attempt started 40 minutes ago, one 20 minutes ago, both leases renewed now (their
    // workers still beat): only the first is past 30 minutes.
    let forty = api.enqueue_test(&api.user, json!({})).await;
    let a = api
        .broker
        .claim(&[TEST_QUEUE], 1, now - 40 * 60_000)
        .await
        .unwrap();
    let twenty = api.enqueue_test(&api.user, json!({})).await;
    let b = api
        .broker
        .claim(&[TEST_QUEUE], 1, now - 20 * 60_000)
        .await
        .unwrap();
    let held: Vec<(String, String)> = a
        .iter()
        .chain(&b)
        .map(|c| (c.id.clone(), c.lease.clone()))
        .collect();
    api.broker.extend(TEST_QUEUE, &held, now).await.unwrap();
    // `curl -X POST` sends no body and no Content-Type: the seed's troubleshooting call.
    let r = api
        .call(
            axum::http::Method::POST,
            "/api/tasks/queue/cleanup",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["requeued"], json!([forty]));
    assert_eq!(
        api.broker.status_of(&twenty).await.unwrap(),
        TaskStatus::Processing
    );
    // An empty object means the same.
    let r = api
        .post("/api/tasks/queue/cleanup", &api.admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
}

//! Batches and webhooks through the API (issue 13): a batch of 1,000 tasks of several types in
//! one call; one bad task names `tasks[i].<field>` and writes nothing; counts, pages, cancel;
//! isolation as for tasks; a task's deliveries; signing secrets by role.

mod common;

use axum::http::{Method, StatusCode};
use common::{setup, TEST_QUEUE};
use serde_json::{json, Value};
use taskfleet::testing;

const HOOK: &str = "https://hooks.example.com/in";

fn test_task(n: usize) -> Value {
    json!({"task_type": TEST_QUEUE, "request": {"op": "echo", "n": n}})
}

#[tokio::test]
async fn a_batch_of_1000_tasks_of_several_types_is_enqueued_in_one_call() {
    let api = setup().await;
    let tasks: Vec<Value> = (0..1000)
        .map(|n| match n % 4 {
            0 => test_task(n),
            1 => json!({"task_type": "story_generation", "request": {"prompt": format!("a fox {n}")}, "priority": "high"}),
            2 => json!({"task_type": "quiz", "request": {"source_text": "Paris is the capital of France."}, "delay_seconds": 60}),
            _ => json!({"task_type": "image_generation", "request": {"prompt": "a cat", "width": 64, "height": 64}}),
        })
        .collect();
    let r = api
        .post(
            "/api/batches",
            &api.user,
            json!({"tasks": tasks, "webhook_url": HOOK}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.message());
    let body = r.json();
    let batch_id = body["batch_id"].as_str().unwrap().to_string();
    let ids: Vec<String> = body["task_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1000);
    assert!(ids[1].starts_with("story_generation."));
    let r = api
        .get(&format!("/api/batches/{batch_id}"), &api.user)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["total"], 1000);
    assert_eq!(v["counts"]["queued"], 750);
    assert_eq!(
        v["counts"]["scheduled"], 250,
        "the quiz tasks wait for their delay"
    );
    assert_eq!(v["done"], false);
    assert_eq!(v["progress"], 0);
    assert_eq!(v["webhook_url"], HOOK);
    let t = api
        .get(&format!("/api/tasks/{}", ids[1]), &api.user)
        .await
        .json();
    assert_eq!(t["priority"], "high");
    assert_eq!(t["batch_id"], batch_id.as_str());
    // Paged, in the order given.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/batches/{batch_id}/tasks?limit=200&cursor={c}"),
            None => format!("/api/batches/{batch_id}/tasks?limit=200"),
        };
        let page = api.get(&path, &api.user).await.json();
        for t in page["tasks"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn one_bad_task_is_named_by_its_index_and_nothing_is_written() {
    let api = setup().await;
    let before = testing::key_count(&api.broker).await;
    let with = |i: usize, bad: Value| {
        let mut tasks: Vec<Value> = (0..6).map(test_task).collect();
        tasks[i] = bad;
        json!({ "tasks": tasks })
    };
    let cases = [
        (
            with(
                3,
                json!({"task_type": "image_generation", "request": {"prompt": "a", "width": 4096}}),
            ),
            StatusCode::BAD_REQUEST,
            "tasks[3].request.width",
        ),
        (
            with(2, json!({"task_type": "nope", "request": {}})),
            StatusCode::BAD_REQUEST,
            "tasks[2].task_type",
        ),
        (
            with(
                5,
                json!({"task_type": TEST_QUEUE, "request": {}, "webhook_url": "ftp://x"}),
            ),
            StatusCode::BAD_REQUEST,
            "tasks[5].webhook_url",
        ),
        (
            with(
                1,
                json!({"task_type": TEST_QUEUE, "request": {}, "delay_seconds": 99999999}),
            ),
            StatusCode::BAD_REQUEST,
            "tasks[1].delay_seconds",
        ),
        (
            with(
                4,
                json!({"task_type": "story_generation", "request": {"prompt": "a", "colour": 1}}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tasks[4].request.colour",
        ),
        (
            with(
                0,
                json!({"task_type": TEST_QUEUE, "request": {}, "colour": 1}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tasks[0].colour",
        ),
        (
            json!({"tasks": [test_task(0)], "webhook_url": "javascript:alert(1)"}),
            StatusCode::BAD_REQUEST,
            "webhook_url",
        ),
        (
            json!({"tasks": (0..1001).map(test_task).collect::<Vec<_>>()}),
            StatusCode::BAD_REQUEST,
            "tasks",
        ),
        (json!({"tasks": []}), StatusCode::BAD_REQUEST, "tasks"),
    ];
    for (body, status, field) in cases {
        let r = api.post("/api/batches", &api.user, body).await;
        assert_eq!(r.status, status, "{field}: {}", r.message());
        assert!(
            r.message().contains(field),
            "{field} not named: {}",
            r.message()
        );
    }
    assert_eq!(
        testing::key_count(&api.broker).await,
        before,
        "a refused batch wrote something"
    );
    // And a single task's webhook_url that is not http(s): 400 naming it, nothing written.
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": TEST_QUEUE, "request": {}, "webhook_url": "file:///etc/passwd"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("webhook_url"), "{}", r.message());
    assert_eq!(testing::key_count(&api.broker).await, before);
}

#[tokio::test]
async fn a_batch_is_seen_and_cancelled_only_by_whom_may_see_its_tasks() {
    let api = setup().await;
    let r = api
        .post(
            "/api/batches",
            &api.user,
            json!({"tasks": (0..10).map(test_task).collect::<Vec<_>>()}),
        )
        .await;
    let batch_id = r.json()["batch_id"].as_str().unwrap().to_string();
    for key in [&api.other, &api.colleague] {
        for (m, path) in [
            (Method::GET, format!("/api/batches/{batch_id}")),
            (Method::GET, format!("/api/batches/{batch_id}/tasks")),
            (Method::POST, format!("/api/batches/{batch_id}/cancel")),
        ] {
            let r = api.call(m.clone(), &path, Some(key), None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}");
        }
    }
    for key in [&api.account_admin, &api.admin] {
        let r = api.get(&format!("/api/batches/{batch_id}"), key).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // A task id is no batch id.
    let id = api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    let r = api.get(&format!("/api/batches/{id}"), &api.user).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Mid-run: three are running (claimed as a worker would), one has completed.
    let b = &api.broker;
    let at = b.server_time_ms().await.unwrap();
    let claimed = b.claim(&[TEST_QUEUE], 4, at).await.unwrap();
    assert_eq!(claimed.len(), 4);
    b.complete_one(TEST_QUEUE, &claimed[0].id, &claimed[0].lease, json!({}), at)
        .await
        .unwrap();
    let r = api
        .call(
            Method::POST,
            &format!("/api/batches/{batch_id}/cancel"),
            Some(&api.user),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.message());
    let v = r.json();
    assert_eq!(
        (v["cancelled"].as_u64(), v["cancel_requested"].as_u64()),
        (Some(6), Some(3))
    );
    let v = api
        .get(&format!("/api/batches/{batch_id}"), &api.user)
        .await
        .json();
    assert_eq!(v["counts"]["cancelled"], 6);
    assert_eq!(v["counts"]["processing"], 3);
    assert_eq!(v["counts"]["completed"], 1);
    assert_eq!(v["cancel_requested"], true);
    assert_eq!(v["progress"], 70);
}

#[tokio::test]
async fn a_tasks_deliveries_are_shown_to_whom_may_see_the_task() {
    let api = setup().await;
    let r = api
        .enqueue_with(
            &api.user,
            json!({"task_type": TEST_QUEUE, "request": {"op": "echo"}, "webhook_url": HOOK}),
        )
        .await;
    let id = r["task_id"].as_str().unwrap().to_string();
    let path = format!("/api/tasks/{id}/webhooks");
    assert!(api.get(&path, &api.user).await.json()["deliveries"]
        .as_array()
        .unwrap()
        .is_empty());
    // A cancel while it waits is an ending: one delivery.
    assert_eq!(api.cancel(&id, &api.user).await.status, StatusCode::OK);
    let v = api.get(&path, &api.user).await.json();
    let d = v["deliveries"].as_array().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["id"], format!("{id}.1"));
    assert_eq!(d[0]["event"], "task.finished");
    assert_eq!(d[0]["state"], "pending");
    assert_eq!(d[0]["payload"]["status"], "cancelled");
    for key in [&api.other, &api.colleague] {
        assert_eq!(api.get(&path, key).await.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn signing_secrets_are_managed_by_account_admins_and_shown_once() {
    let api = setup().await;
    let r = api
        .call(Method::POST, "/api/webhooks/secrets", Some(&api.user), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .call(
            Method::POST,
            "/api/webhooks/secrets",
            Some(&api.account_admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let first = r.json();
    assert!(first["secret"].as_str().unwrap().starts_with("whsec_"));
    let r = api
        .call(
            Method::POST,
            "/api/webhooks/secrets",
            Some(&api.account_admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = api
        .call(
            Method::POST,
            "/api/webhooks/secrets/rotate",
            Some(&api.account_admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let second = r.json();
    assert_ne!(second["secret"], first["secret"]);
    assert!(
        second["previous_expires_at"].as_i64().unwrap() > second["created_at"].as_i64().unwrap()
    );
    let r = api.get("/api/webhooks/secrets", &api.account_admin).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&r.bytes).to_string();
    assert!(
        !text.contains(first["secret"].as_str().unwrap()),
        "a secret listed again"
    );
    assert!(
        !text.contains(second["secret"].as_str().unwrap()),
        "a secret listed again"
    );
    let list = r.json();
    let listed = list["secrets"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], second["id"]);
    assert!(listed[0]["expires_at"].is_null());
    assert!(listed[1]["expires_at"].is_i64());
    // An admin manages any account's; an account admin only its own.
    let r = api
        .get("/api/webhooks/secrets?account_id=acme", &api.admin)
        .await;
    assert_eq!(r.json()["secrets"].as_array().unwrap().len(), 2);
    let r = api
        .get(
            "/api/webhooks/secrets?account_id=globex",
            &api.account_admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Signatures made with the secret verify.
    let secret = second["secret"].as_str().unwrap();
    let sig = taskfleet::webhooks::sign(secret, "m1", 1, b"{}").unwrap();
    assert!(taskfleet::webhooks::verify(secret, "m1", 1, b"{}", &sig));
}

//! One task, the caller's list (filters, cursor paging), cancel and artifacts.

mod common;

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use common::{setup, TEST_QUEUE};
use serde_json::json;
use taskfleet::{Completion, NewTask};

#[tokio::test]
async fn a_task_is_shown_with_its_fields_and_without_its_lease() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    let now = api.now();
    let c = api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap();
    let r = api.get(&format!("/api/tasks/{id}"), &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
    let t = r.json();
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["status"], "processing");
    assert_eq!(t["request"], json!({"op": "echo"}));
    assert_eq!(t["attempts"], 1);
    assert!(t.get("lease").is_none());
    let text = String::from_utf8(r.bytes.clone()).unwrap();
    assert!(!text.contains(&c[0].lease), "the lease token leaked");
}

#[tokio::test]
async fn a_missing_task_is_404_and_an_id_that_cannot_be_one_is_400() {
    let api = setup().await;
    let r = api
        .get("/api/tasks/0190f3c2-0000-7000-8000-000000000000", &api.user)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    for bad in [".hidden", "x%20y", "a:b", &"a".repeat(129)] {
        let r = api.get(&format!("/api/tasks/{bad}"), &api.user).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.message().starts_with("id"));
    }
    // A well-formed id of no task (a course's lesson not made yet) is looked up: 404 here.
    let r = api
        .get(
            "/api/tasks/video.0.course_video.0.0190f3c2-lesson-0",
            &api.user,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The API's ids carry their type and shard, and are found as given.
    let id = api.enqueue_test(&api.user, json!({})).await;
    assert!(
        id.starts_with(&format!("{}.0.", taskfleet::TEST_QUEUE)),
        "{id}"
    );
    let r = api.get(&format!("/api/tasks/{id}"), &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn the_list_shows_own_tasks_newest_first_with_filters() {
    let api = setup().await;
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(api.enqueue_test(&api.user, json!({})).await);
    }
    let story = api
        .post("/api/story/generate", &api.user, json!({"prompt": "x"}))
        .await
        .json()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    api.enqueue_test(&api.other, json!({})).await;
    let r = api.get("/api/tasks", &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<String> = r.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected = mine.clone();
    expected.push(story.clone());
    expected.reverse();
    assert_eq!(ids, expected);
    assert_eq!(r.json()["next_cursor"], json!(null));

    let r = api
        .get("/api/tasks?task_type=story_generation", &api.user)
        .await;
    assert_eq!(r.json()["tasks"].as_array().unwrap().len(), 1);
    api.call(
        Method::POST,
        &format!("/api/tasks/{}/cancel", mine[1]),
        Some(&api.user),
        None,
    )
    .await;
    let r = api.get("/api/tasks?status=cancelled", &api.user).await;
    let got = r.json()["tasks"].as_array().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], mine[1].as_str());
    for bad in [
        "status=done",
        "limit=0",
        "limit=201",
        "cursor=zz",
        "task_type=podcast",
    ] {
        let r = api.get(&format!("/api/tasks?{bad}"), &api.user).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.status
        );
    }
    let r = api.get("/api/tasks?sort=asc", &api.user).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("sort"));
}

#[tokio::test]
async fn cursor_paging_over_250_tasks_has_no_duplicates_or_gaps() {
    let api = setup().await;
    // Many tasks share a millisecond: the cursor must order by (time, id).
    let now = api.now();
    let tasks: Vec<NewTask> = (0..250)
        .map(|i| NewTask::new(TEST_QUEUE, json!({ "i": i })).owner("acme", "alice"))
        .collect();
    let mut all: Vec<String> = Vec::new();
    for chunk in tasks.chunks(50) {
        for e in api.broker.enqueue_many(chunk.to_vec(), now).await.unwrap() {
            all.push(e.id);
        }
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let path = match &cursor {
            Some(c) => format!("/api/tasks?limit=40&cursor={c}"),
            None => "/api/tasks?limit=40".to_string(),
        };
        let r = api.get(&path, &api.user).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        let page = r.json();
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= 40);
        seen.extend(tasks.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 250, "pages returned {} tasks", seen.len());
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 250);
    assert_eq!(unique, all.iter().collect::<HashSet<_>>());
}

#[tokio::test]
async fn cancel_ends_a_waiting_task_asks_a_running_one_and_refuses_a_finished_one() {
    let api = setup().await;
    let waiting = api.enqueue_test(&api.user, json!({})).await;
    let r = api.cancel(&waiting, &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "cancelled");
    let r = api.cancel(&waiting, &api.user).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "conflict");

    let running = api.enqueue_test(&api.user, json!({})).await;
    let now = api.now();
    api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap();
    let r = api.cancel(&running, &api.user).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.json()["cancel_requested"], true);
    let t = api.broker.get(&running).await.unwrap().unwrap();
    assert!(t.cancel_requested);
}

#[tokio::test]
async fn an_artifact_is_served_with_its_media_type() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({})).await;
    api.state
        .artifacts
        .put(&id, "speech.wav", b"RIFF0000WAVE".to_vec())
        .await
        .unwrap();
    let r = api
        .get(&format!("/api/tasks/{id}/artifacts/speech.wav"), &api.user)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "audio/wav");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes, b"RIFF0000WAVE");
    let r = api
        .get(&format!("/api/tasks/{id}/artifacts/other.wav"), &api.user)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .get(&format!("/api/tasks/{id}/artifacts/..secret"), &api.user)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// GET of an artifact with a `Range` header.
async fn ranged(api: &common::Api, path: &str, range: &str) -> common::Reply {
    let req = axum::http::Request::get(path)
        .header("authorization", format!("Bearer {}", api.user))
        .header("range", range)
        .body(axum::body::Body::empty())
        .unwrap();
    api.send(req).await
}

#[tokio::test]
async fn artifacts_are_streamed_with_ranges() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({})).await;
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    api.state
        .artifacts
        .put(&id, "data.wav", bytes.clone())
        .await
        .unwrap();
    let path = format!("/api/tasks/{id}/artifacts/data.wav");
    let r = api.get(&path, &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, bytes);
    assert_eq!(r.headers["accept-ranges"], "bytes");
    assert_eq!(r.headers["content-length"], "100000");
    assert_eq!(
        r.headers["content-disposition"],
        "inline; filename=\"data.wav\""
    );
    for (range, from, to) in [
        ("bytes=10-19", 10, 19),
        ("bytes=99990-", 99_990, 99_999),
        ("bytes=-5", 99_995, 99_999),
        ("bytes=99999-200000", 99_999, 99_999),
        ("bytes=0-0", 0, 0),
    ] {
        let r = ranged(&api, &path, range).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.bytes, &bytes[from..=to], "{range}");
        assert_eq!(
            r.headers["content-range"],
            format!("bytes {from}-{to}/100000"),
            "{range}"
        );
        assert_eq!(
            r.headers["content-length"],
            (to - from + 1).to_string(),
            "{range}"
        );
    }
    for range in ["bytes=100000-", "bytes=5-2", "bytes=-0", "bytes=x-y"] {
        let r = ranged(&api, &path, range).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.code(), "range_not_satisfiable");
        assert_eq!(r.headers["content-range"], "bytes */100000", "{range}");
    }
    // Another unit, or several ranges: the Range header is ignored and the whole file sent.
    for range in ["items=0-5", "bytes=0-1,5-6"] {
        let r = ranged(&api, &path, range).await;
        assert_eq!(r.status, StatusCode::OK, "{range}");
        assert_eq!(r.bytes, bytes, "{range}");
    }
    let r = ranged(
        &api,
        &format!("/api/tasks/{id}/artifacts/none.wav"),
        "bytes=0-1",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_types_list_every_catalog_type_and_the_test_queue() {
    let api = setup().await;
    let r = api.get("/api/tasks/types", &api.user).await;
    assert_eq!(r.status, StatusCode::OK);
    let names: Vec<String> = r.json()["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_type"].as_str().unwrap().to_string())
        .collect();
    for t in taskfleet::TaskType::ALL {
        assert!(names.contains(&t.to_string()), "{t}");
    }
    assert!(names.contains(&TEST_QUEUE.to_string()));
    let video = &r.json()["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_type"] == "video")
        .unwrap()
        .clone();
    assert_eq!(video["max_attempts"], 3);
    assert_eq!(video["timeout_minutes"], 60);
    assert_eq!(video["endpoint"], "/api/video/generate");
}

#[tokio::test]
async fn a_completed_task_shows_its_result() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({})).await;
    let now = api.now();
    let c = api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap();
    api.broker
        .complete(
            TEST_QUEUE,
            &[Completion {
                id: id.clone(),
                lease: c[0].lease.clone(),
                result: json!({"url": "x"}),
            }],
            now + 5,
        )
        .await
        .unwrap();
    let t = api.get(&format!("/api/tasks/{id}"), &api.user).await.json();
    assert_eq!(t["status"], "completed");
    assert_eq!(t["result"], json!({"url": "x"}));
}

#[tokio::test]
async fn paging_with_a_status_filter_finds_every_match_exactly_once() {
    let api = setup().await;
    let now = api.now();
    let tasks: Vec<NewTask> = (0..250)
        .map(|i| NewTask::new(TEST_QUEUE, json!({ "i": i })).owner("acme", "alice"))
        .collect();
    let ids: Vec<String> = api
        .broker
        .enqueue_many(tasks, now)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut cancelled = HashSet::new();
    for id in ids.iter().step_by(3) {
        api.broker.cancel(id, now + 1).await.unwrap();
        cancelled.insert(id.clone());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/api/tasks?status=cancelled&limit=7&cursor={c}"),
            None => "/api/tasks?status=cancelled&limit=7".to_string(),
        };
        let page = api.get(&path, &api.user).await.json();
        for t in page["tasks"].as_array().unwrap() {
            assert_eq!(t["status"], "cancelled");
            seen.push(t["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), cancelled.len());
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), cancelled);
}

#[tokio::test]
async fn a_bad_query_value_names_its_parameter() {
    let api = setup().await;
    let r = api.get("/api/tasks?limit=abc", &api.user).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().starts_with("limit"), "{}", r.message());
}

//! Enqueue through POST /api/tasks and the eight typed endpoints: answers, validation errors
//! (each naming its field), idempotency, scheduling and the completion estimate.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{setup, valid_typed_requests, TEST_QUEUE};
use std::time::Duration;

use serde_json::{json, Value};
use taskfleet::{Completion, TaskStatus};

#[tokio::test]
async fn a_generic_enqueue_answers_202_with_position_and_estimate() {
    let api = setup().await;
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": TEST_QUEUE, "request": {"op": "echo"}, "priority": "high"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let b = r.json();
    assert_eq!(b["status"], "queued");
    assert_eq!(b["task_type"], TEST_QUEUE);
    assert_eq!(b["priority"], "high");
    assert_eq!(b["queue_position"], 0);
    assert!(b["estimated_completion_minutes"].as_u64().unwrap() >= 1);
    let id = b["task_id"].as_str().unwrap();
    let task = api.broker.get(id).await.unwrap().unwrap();
    assert_eq!(task.account_id.as_deref(), Some("acme"));
    assert_eq!(task.user_id.as_deref(), Some("alice"));
    assert_eq!(task.request, json!({"op": "echo"}));
}

#[tokio::test]
async fn every_typed_endpoint_enqueues_its_type() {
    let api = setup().await;
    for (path, task_type, body) in valid_typed_requests() {
        let r = api.post(path, &api.user, body.clone()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{path}: {}", r.json());
        let b = r.json();
        assert_eq!(b["task_type"], task_type, "{path}");
        let task = api
            .broker
            .get(b["task_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(task.task_type, task_type);
        for (k, v) in body.as_object().unwrap() {
            assert_eq!(&task.request[k], v, "{path}: {k}");
        }
    }
}

#[tokio::test]
async fn a_typed_endpoint_takes_enqueue_options_without_storing_them() {
    let api = setup().await;
    let r = api
        .post(
            "/api/story/generate",
            &api.user,
            json!({"prompt": "a fox", "priority": "urgent", "delay_seconds": 60}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json());
    assert_eq!(r.json()["priority"], "urgent");
    assert_eq!(r.json()["status"], "scheduled");
    assert_eq!(r.json()["queue_position"], json!(null));
    let task = api
        .broker
        .get(r.json()["task_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.request, json!({"prompt": "a fox"}));
}

#[tokio::test]
async fn unknown_fields_are_refused_with_422_naming_the_field() {
    let api = setup().await;
    for (path, _, mut body) in valid_typed_requests() {
        body["colour"] = json!("red");
        let r = api.post(path, &api.user, body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(r.code(), "unknown_field");
        assert!(r.message().contains("colour"), "{path}: {}", r.message());
    }
    let r = api
        .post(
            "/api/video/generate",
            &api.user,
            json!({"title": "T", "slides": [{"title": "a", "text": "b", "font": "x"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("slides[0].font"), "{}", r.message());
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": TEST_QUEUE, "request": {}, "when": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("when"));
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": "quiz", "request": {"source_text": "x", "level": 3}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("request.level"), "{}", r.message());
}

#[tokio::test]
async fn out_of_range_values_are_refused_with_400_naming_the_field() {
    let api = setup().await;
    let slides: Vec<_> = (0..101)
        .map(|_| json!({"title": "t", "text": "x"}))
        .collect();
    // Each part within its own limit, the whole far past an hour of speech.
    let words = vec!["a"; 10_000].join(" ");
    let hours_of_steps: Vec<_> = (0..50).map(|_| json!({ "text": words })).collect();
    let long_slides: Vec<_> = (0..4)
        .map(|_| json!({"title": "t", "text": "x".repeat(20_000)}))
        .collect();
    let cases = [
        (
            "/api/animated-lesson/generate",
            json!({"title": "t", "steps": hours_of_steps.clone()}),
            "steps",
        ),
        (
            "/api/video/generate",
            json!({"title": "t", "slides": long_slides.clone()}),
            "slides",
        ),
        (
            "/api/course-video/generate",
            json!({"title": "t", "lessons": [
                {"title": "a", "slides": long_slides[..2]},
                {"title": "b", "slides": long_slides[2..]},
            ]}),
            "lessons",
        ),
        (
            "/api/voice-generation/generate",
            json!({"text": words, "speed": 80}),
            "text",
        ),
        (
            "/api/image/generate",
            json!({"prompt": "a", "width": 4096}),
            "width",
        ),
        (
            "/api/image/generate",
            json!({"prompt": "a", "height": 10}),
            "height",
        ),
        (
            "/api/voice-generation/generate",
            json!({"text": "x".repeat(20_001)}),
            "text",
        ),
        (
            "/api/voice-generation/generate",
            json!({"text": "hi", "speed": 500}),
            "speed",
        ),
        (
            "/api/quiz/generate",
            json!({"source_text": "x", "num_questions": 51}),
            "num_questions",
        ),
        (
            "/api/video/generate",
            json!({"title": "t", "slides": slides}),
            "slides",
        ),
        (
            "/api/video/generate",
            json!({"title": "t", "slides": []}),
            "slides",
        ),
        (
            "/api/animated-lesson/generate",
            json!({"title": "t", "steps": []}),
            "steps",
        ),
        (
            "/api/course-video/generate",
            json!({"title": "t", "lessons": []}),
            "lessons",
        ),
        ("/api/story/generate", json!({"prompt": ""}), "prompt"),
        (
            "/api/story/generate",
            json!({"prompt": "a", "length": "epic"}),
            "length",
        ),
        (
            "/api/documentation/generate",
            json!({"title": "t"}),
            "source",
        ),
        (
            "/api/story/generate",
            json!({"prompt": "a", "delay_seconds": 99_999_999}),
            "delay_seconds",
        ),
        (
            "/api/story/generate",
            json!({"prompt": "a", "webhook_url": "ftp://x"}),
            "webhook_url",
        ),
        (
            "/api/story/generate",
            json!({"prompt": "a", "priority": "asap"}),
            "priority",
        ),
    ];
    for (path, body, field) in cases {
        let r = api.post(path, &api.user, body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{path} {field}: {}",
            r.json()
        );
        assert_eq!(r.code(), "invalid_input");
        assert!(r.message().starts_with(field), "{field}: {}", r.message());
    }
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": "image_generation", "request": {"prompt": "a", "width": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().starts_with("request.width"), "{}", r.message());
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": "animated_lesson",
                   "request": {"title": "t", "steps": hours_of_steps}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().starts_with("request.steps"), "{}", r.message());
    assert!(r.message().contains("at most"), "{}", r.message());
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_large_bodies_get_their_statuses() {
    let api = setup().await;
    let req = |ct: &str, body: Body| {
        Request::post("/api/tasks")
            .header("authorization", format!("Bearer {}", api.user))
            .header("content-type", ct)
            .body(body)
            .unwrap()
    };
    let r = api
        .send(req("application/json", Body::from("{\"task_type\": ")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "malformed_json");
    let r = api.send(req("text/plain", Body::from("{}"))).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.code(), "unsupported_media_type");
    let big = format!(
        "{{\"task_type\":\"test\",\"request\":{{\"pad\":\"{}\"}}}}",
        "x".repeat((1 << 20) + 10)
    );
    let r = api.send(req("application/json", Body::from(big))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "payload_too_large");
    let r = api
        .send(req("application/json", Body::from("[1, 2]")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unknown_task_type_is_refused_with_422() {
    let api = setup().await;
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": "podcast", "request": {}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "unknown_task_type");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_task_and_its_current_status() {
    let api = setup().await;
    let send = |key: String, idem: &'static str| {
        let api = &api;
        async move {
            let req = Request::post("/api/tasks")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .header("idempotency-key", idem)
                .body(Body::from(
                    json!({"task_type": TEST_QUEUE, "request": {"op": "echo"}}).to_string(),
                ))
                .unwrap();
            api.send(req).await
        }
    };
    let first = send(api.user.clone(), "order-42").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let id = first.json()["task_id"].clone();
    // It runs meanwhile: the repeat reports the first task as it is now.
    let now = api.now();
    let claimed = api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap();
    assert_eq!(json!(claimed[0].id), id);
    let again = send(api.user.clone(), "order-42").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.json()["task_id"], id);
    assert_eq!(again.json()["status"], "processing");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    // Another account's same key is another task.
    let theirs = send(api.other.clone(), "order-42").await;
    assert_ne!(theirs.json()["task_id"], id);
    let bad = send(api.user.clone(), "has space").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.message().starts_with("Idempotency-Key"));
}

#[tokio::test]
async fn run_at_in_the_future_schedules_the_task() {
    let api = setup().await;
    let at = api.now() + 3_600_000;
    let b = api
        .enqueue_with(
            &api.user,
            json!({"task_type": TEST_QUEUE, "request": {}, "run_at": at}),
        )
        .await;
    assert_eq!(b["status"], "scheduled");
    assert!(b["estimated_completion_minutes"].as_u64().unwrap() >= 60);
    let id = b["task_id"].as_str().unwrap();
    let t = api.broker.get(id).await.unwrap().unwrap();
    assert_eq!((t.status, t.run_at), (TaskStatus::Scheduled, Some(at)));
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": TEST_QUEUE, "request": {}, "run_at": at, "delay_seconds": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_estimate_uses_the_types_measured_average_and_the_queue_ahead() {
    let api = setup().await;
    // One task that took ten minutes gives the type its average.
    api.enqueue_test(&api.user, json!({})).await;
    let t0 = api.now();
    let c = api.broker.claim(&[TEST_QUEUE], 1, t0).await.unwrap();
    let done = [Completion {
        id: c[0].id.clone(),
        lease: c[0].lease.clone(),
        result: json!({}),
    }];
    api.broker
        .complete(TEST_QUEUE, &done, t0 + 600_000)
        .await
        .unwrap();
    // No live worker: one slot. The third in line waits for two runs, then runs.
    let mut estimates = Vec::new();
    for _ in 0..3 {
        let b = api
            .enqueue_with(&api.user, json!({"task_type": TEST_QUEUE, "request": {}}))
            .await;
        estimates.push((
            b["queue_position"].as_u64().unwrap(),
            b["estimated_completion_minutes"].as_u64().unwrap(),
        ));
    }
    assert_eq!(estimates, vec![(0, 10), (1, 20), (2, 30)]);
}

#[tokio::test]
async fn the_body_limit_follows_the_settings() {
    let (mut s, dir) = common::settings();
    s.api.max_body_bytes = 2_000;
    let api = common::setup_with(s, dir).await;
    let body = |pad: usize| json!({"task_type": TEST_QUEUE, "request": {"pad": "x".repeat(pad)}});
    let r = api.post("/api/tasks", &api.user, body(1_000)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = api.post("/api/tasks", &api.user, body(3_000)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.message().contains("2000"), "{}", r.message());
}

#[tokio::test]
async fn an_account_past_its_rate_limit_gets_429_and_writes_nothing() {
    let (mut s, dir) = common::settings();
    s.limits.rate_per_minute = 3;
    let api = common::setup_with(s, dir).await;
    let body = json!({"task_type": TEST_QUEUE, "request": {"op": "echo"}});
    for _ in 0..3 {
        assert_eq!(
            api.post("/api/tasks", &api.user, body.clone()).await.status,
            StatusCode::ACCEPTED
        );
    }
    let r = api.post("/api/tasks", &api.user, body.clone()).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let typed = api
        .post("/api/story/generate", &api.user, json!({"prompt": "a fox"}))
        .await;
    assert_eq!(typed.status, StatusCode::TOO_MANY_REQUESTS);
    // Only the three accepted tasks exist; another account has its own allowance.
    let listed = api.get("/api/tasks", &api.user).await.json();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(
        api.post("/api/tasks", &api.other, body).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn an_idempotency_key_sent_again_with_another_body_is_a_422_and_writes_nothing() {
    let api = setup().await;
    let send = |body: Value| {
        let api = &api;
        async move {
            let req = Request::post("/api/tasks")
                .header("authorization", format!("Bearer {}", api.user))
                .header("content-type", "application/json")
                .header("idempotency-key", "order-43")
                .body(Body::from(body.to_string()))
                .unwrap();
            api.send(req).await
        }
    };
    let first = send(json!({"task_type": TEST_QUEUE, "request": {"op": "echo", "n": 1}})).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let other = send(json!({"task_type": TEST_QUEUE, "request": {"op": "echo", "n": 2}})).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.code(), "idempotency_key_reused");
    let urgent = send(
        json!({"task_type": TEST_QUEUE, "request": {"op": "echo", "n": 1}, "priority": "urgent"}),
    )
    .await;
    assert_eq!(urgent.code(), "idempotency_key_reused");
    let listed = api.get("/api/tasks", &api.user).await.json();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);
    // The same body again is the first task.
    let again = send(json!({"task_type": TEST_QUEUE, "request": {"op": "echo", "n": 1}})).await;
    assert_eq!(again.json()["task_id"], first.json()["task_id"]);
}

#[tokio::test]
async fn an_enqueue_whose_answer_was_lost_is_sent_again_and_answers_202_for_one_task() {
    let proxy =
        taskfleet::testing::LossyProxy::start(taskfleet::testing::shared_redis().port()).await;
    let (mut s, dir) = common::settings();
    s.redis.url = proxy.url();
    s.redis.timeout_ms = 300;
    // The request's only Redis call is then the enqueue (its key is cached after the first).
    s.limits.rate_per_minute = 0;
    let api = common::setup_with(s, dir).await;
    // Scripts loaded first (a lost NOSCRIPT would run nothing).
    api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    proxy.drop_replies(true);
    let send = tokio::spawn({
        let router = api.router.clone();
        let key = api.user.clone();
        async move {
            let req = Request::post("/api/tasks")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"task_type": TEST_QUEUE, "request": {"op": "echo", "n": 2}}).to_string(),
                ))
                .unwrap();
            tower::ServiceExt::oneshot(router, req).await.unwrap()
        }
    });
    // The first try's answer is lost (it wrote the task); then the network heals.
    tokio::time::sleep(Duration::from_millis(350)).await;
    proxy.drop_replies(false);
    let resp = send.await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let listed = api.get("/api/tasks", &api.user).await.json();
    assert_eq!(
        listed["tasks"].as_array().unwrap().len(),
        2,
        "one task for the request, not two: {listed}"
    );
}

#[tokio::test]
async fn an_account_past_its_quotas_gets_429_or_413_and_writes_nothing() {
    let (mut s, dir) = common::settings();
    s.limits.max_tasks = 2;
    let api = common::setup_with(s, dir).await;
    api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": TEST_QUEUE, "request": {"op": "echo"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "task_quota_exceeded");
    assert_eq!(
        api.get("/api/tasks", &api.user).await.json()["tasks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Another account is not held back by acme's tasks.
    api.enqueue_test(&api.other, json!({"op": "echo"})).await;

    let (mut s, dir) = common::settings();
    s.limits.max_bytes = 200;
    let api = common::setup_with(s, dir).await;
    let r = api
        .post(
            "/api/tasks",
            &api.user,
            json!({"task_type": TEST_QUEUE, "request": {"op": "echo", "pad": "x".repeat(300)}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "storage_quota_exceeded");
    assert!(api.get("/api/tasks", &api.user).await.json()["tasks"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_account_kept_from_urgent_gets_400_naming_priority() {
    let (mut s, dir) = common::settings();
    s.limits.accounts.insert(
        "acme".into(),
        taskfleet::config::AccountLimits {
            max_priority: Some(taskfleet::Priority::Normal),
            ..Default::default()
        },
    );
    let api = common::setup_with(s, dir).await;
    for p in ["urgent", "high"] {
        let r = api
            .post(
                "/api/tasks",
                &api.user,
                json!({"task_type": TEST_QUEUE, "request": {}, "priority": p}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{p}");
        assert!(r.message().starts_with("priority"), "{}", r.message());
    }
    api.enqueue_with(
        &api.user,
        json!({"task_type": TEST_QUEUE, "request": {}, "priority": "normal"}),
    )
    .await;
    // Every band stays open to others, as the seed's API has it.
    api.enqueue_with(
        &api.other,
        json!({"task_type": TEST_QUEUE, "request": {}, "priority": "urgent"}),
    )
    .await;
}

//! GET /api/tasks/{id}/events: the current state, then every change, until the task ends.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{setup, TEST_QUEUE};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Reads SSE events (name, data) from a body until it ends; each frame must come within a
/// generous bound so a broken stream fails the test instead of hanging it.
struct Events {
    body: Body,
    buf: String,
}

impl Events {
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let frame = tokio::time::timeout(Duration::from_secs(30), self.body.frame())
                .await
                .expect("an event within 30 s")?
                .unwrap();
            if let Ok(bytes) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }
}

async fn open(api: &common::Api, id: &str, key: &str) -> Events {
    let req = Request::get(format!("/api/tasks/{id}/events"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    Events {
        body: resp.into_body(),
        buf: String::new(),
    }
}

#[tokio::test]
async fn events_follow_a_task_from_queued_to_completed_and_then_end() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    let mut ev = open(&api, &id, &api.user).await;
    let (name, task) = ev.next().await.unwrap();
    assert_eq!(
        (name.as_str(), task["status"].clone()),
        ("queued", json!("queued"))
    );
    assert_eq!(task["id"], id.as_str());

    let now = api.now();
    let c = api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap();
    let (name, task) = ev.next().await.unwrap();
    assert_eq!(name, "processing");
    assert_eq!(task["attempts"], 1);

    api.broker
        .progress(TEST_QUEUE, &id, &c[0].lease, 50, "half way")
        .await
        .unwrap();
    let (name, task) = ev.next().await.unwrap();
    assert_eq!(name, "processing");
    assert_eq!(
        (task["progress"].clone(), task["message"].clone()),
        (json!(50), json!("half way"))
    );

    api.broker
        .complete_one(TEST_QUEUE, &id, &c[0].lease, json!({"ok": true}), now + 10)
        .await
        .unwrap();
    let (name, task) = ev.next().await.unwrap();
    assert_eq!(name, "completed");
    assert_eq!(task["result"], json!({"ok": true}));
    assert!(
        ev.next().await.is_none(),
        "the stream ends after a terminal state"
    );
}

#[tokio::test]
async fn events_of_a_retried_task_show_the_retry() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({"op": "fail"})).await;
    let mut ev = open(&api, &id, &api.user).await;
    assert_eq!(ev.next().await.unwrap().0, "queued");
    let now = api.now();
    let c = api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap();
    assert_eq!(ev.next().await.unwrap().0, "processing");
    api.broker
        .fail_one(TEST_QUEUE, &id, &c[0].lease, "planned", false, now + 5)
        .await
        .unwrap();
    let (name, task) = ev.next().await.unwrap();
    assert_eq!(name, "retrying");
    assert_eq!(task["error"], "planned");
    let r = api
        .call(
            axum::http::Method::POST,
            &format!("/api/tasks/{id}/cancel"),
            Some(&api.user),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ev.next().await.unwrap().0, "cancelled");
    assert!(ev.next().await.is_none());
}

#[tokio::test]
async fn events_of_a_finished_task_send_its_state_once_and_end() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({})).await;
    api.broker.cancel(&id, api.now()).await.unwrap();
    let mut ev = open(&api, &id, &api.user).await;
    assert_eq!(ev.next().await.unwrap().0, "cancelled");
    assert!(ev.next().await.is_none());
}

#[tokio::test]
async fn streams_over_the_limit_are_refused_with_503_until_one_ends() {
    let (s, dir) = common::settings();
    let mut api = common::setup_with(s, dir).await;
    api.state.event_streams = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    api.router = taskfleet_api::app(api.state.clone());
    let waiting = api.enqueue_test(&api.user, json!({})).await;
    let mut first = open(&api, &waiting, &api.user).await;
    assert_eq!(first.next().await.unwrap().0, "queued");
    let r = api
        .get(&format!("/api/tasks/{waiting}/events"), &api.user)
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), "too_many_streams");
    // The first stream ends with its task; its permit comes back.
    api.broker.cancel(&waiting, api.now()).await.unwrap();
    assert_eq!(first.next().await.unwrap().0, "cancelled");
    assert!(first.next().await.is_none());
    for _ in 0..100 {
        if api.state.event_streams.available_permits() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut again = open(&api, &waiting, &api.user).await;
    assert_eq!(again.next().await.unwrap().0, "cancelled");
}

#[tokio::test]
async fn one_account_cannot_hold_more_streams_than_its_share() {
    let (mut s, dir) = common::settings();
    s.api.max_streams_per_account = 2;
    let api = common::setup_with(s, dir).await;
    let mine = api.enqueue_test(&api.user, json!({})).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut ev = open(&api, &mine, &api.user).await;
        assert_eq!(ev.next().await.unwrap().0, "queued");
        held.push(ev);
    }
    let r = api
        .get(&format!("/api/tasks/{mine}/events"), &api.user)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json());
    assert_eq!(r.code(), "too_many_streams");
    // Another account still gets its own.
    let theirs = api.enqueue_test(&api.other, json!({})).await;
    let mut ev = open(&api, &theirs, &api.other).await;
    assert_eq!(ev.next().await.unwrap().0, "queued");
    // A stream the account closes gives its place back.
    drop(held.pop());
    let mut reopened = None;
    for _ in 0..500 {
        let req = Request::get(format!("/api/tasks/{mine}/events"))
            .header("authorization", format!("Bearer {}", api.user))
            .body(Body::empty())
            .unwrap();
        let resp = api.router.clone().oneshot(req).await.unwrap();
        if resp.status() == StatusCode::OK {
            reopened = Some(resp);
            break;
        }
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "the closed stream's place came back");
}

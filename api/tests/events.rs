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
    /// The `id:` of the last event read.
    last_id: Option<String>,
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
                    } else if let Some(v) = line.strip_prefix("id:") {
                        self.last_id = Some(v.trim().to_string());
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
    resume(api, id, key, None).await.expect("a stream")
}

/// Opens the stream with `Last-Event-ID`, as `EventSource` does when it reconnects; `None` for
/// a 204 (nothing will come).
async fn resume(api: &common::Api, id: &str, key: &str, last: Option<&str>) -> Option<Events> {
    let mut req = Request::get(format!("/api/tasks/{id}/events"))
        .header("authorization", format!("Bearer {key}"));
    if let Some(last) = last {
        req = req.header("last-event-id", last);
    }
    let resp = api
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    if resp.status() == StatusCode::NO_CONTENT {
        return None;
    }
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    Some(Events {
        body: resp.into_body(),
        buf: String::new(),
        last_id: None,
    })
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

#[tokio::test]
async fn every_event_has_an_id_and_last_event_id_resumes_without_repeating_a_state() {
    let api = setup().await;
    let id = api.enqueue_test(&api.user, json!({"op": "echo"})).await;
    let mut ev = open(&api, &id, &api.user).await;
    assert_eq!(ev.next().await.unwrap().0, "queued");
    let seen_queued = ev.last_id.clone().expect("the first event has an id");
    drop(ev);
    // While the client is away the task is claimed: resuming sends the state it missed.
    let now = api.now();
    let c = api.broker.claim(&[TEST_QUEUE], 1, now).await.unwrap();
    let mut ev = resume(&api, &id, &api.user, Some(&seen_queued))
        .await
        .unwrap();
    assert_eq!(ev.next().await.unwrap().0, "processing");
    let seen_processing = ev.last_id.clone().unwrap();
    assert_ne!(seen_processing, seen_queued);
    drop(ev);
    // Resuming with the state it has: nothing is repeated; the next change comes.
    let mut ev = resume(&api, &id, &api.user, Some(&seen_processing))
        .await
        .unwrap();
    api.broker
        .progress(TEST_QUEUE, &id, &c[0].lease, 40, "on it")
        .await
        .unwrap();
    let (name, task) = ev.next().await.unwrap();
    assert_eq!(
        (name.as_str(), task["progress"].clone()),
        ("processing", json!(40))
    );
    api.broker
        .complete_one(TEST_QUEUE, &id, &c[0].lease, json!({}), now + 10)
        .await
        .unwrap();
    assert_eq!(ev.next().await.unwrap().0, "completed");
    let seen_completed = ev.last_id.clone().unwrap();
    assert!(ev.next().await.is_none());
    // EventSource reconnects after the end: 204 tells it the stream is over for good.
    assert!(resume(&api, &id, &api.user, Some(&seen_completed))
        .await
        .is_none());
    // A client that missed the end gets it; a Last-Event-ID it did not get from us is ignored.
    for last in [seen_processing.as_str(), "junk", "1-1"] {
        let mut ev = resume(&api, &id, &api.user, Some(last)).await.unwrap();
        assert_eq!(ev.next().await.unwrap().0, "completed", "{last}");
    }
}

#[tokio::test]
async fn the_stream_takes_the_applications_token_in_its_query_but_never_a_key() {
    let (mut s, dir) = common::settings();
    let secret = "the-application-backend-shares-this-secret";
    s.auth.jwt.hs256_secret = Some(secret.into());
    let api = common::setup_with(s, dir).await;
    let id = api.enqueue_test(&api.user, json!({})).await;
    api.broker.cancel(&id, api.now()).await.unwrap();
    let exp = api.now() / 1000 + 600;
    let token = taskfleet_api::token::hs256(
        secret,
        &std::collections::HashMap::from([
            ("sub", json!("alice")),
            ("account_id", json!("acme")),
            ("role", json!("user")),
            ("exp", json!(exp)),
        ]),
    );
    let r = api
        .call(
            axum::http::Method::GET,
            &format!("/api/tasks/{id}/events?access_token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let body = String::from_utf8(r.bytes.clone()).unwrap();
    assert!(body.contains("event: cancelled"), "{body}");
    assert!(body.contains("\nid: "), "{body}");
    // An API key in a query string would end up in logs and histories: refused.
    let r = api
        .call(
            axum::http::Method::GET,
            &format!("/api/tasks/{id}/events?access_token={}", api.user),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.message().contains("Authorization"), "{}", r.message());
    // Only on this route: the task itself still needs the header.
    let r = api
        .call(
            axum::http::Method::GET,
            &format!("/api/tasks/{id}?access_token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A colleague's token in the query: 404 like any other route.
    let carol = taskfleet_api::token::hs256(
        secret,
        &std::collections::HashMap::from([
            ("sub", json!("carol")),
            ("account_id", json!("acme")),
            ("role", json!("user")),
            ("exp", json!(exp)),
        ]),
    );
    let r = api
        .call(
            axum::http::Method::GET,
            &format!("/api/tasks/{id}/events?access_token={carol}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_quiet_stream_sends_a_keep_alive_comment() {
    let (s, dir) = common::settings();
    let mut api = common::setup_with(s, dir).await;
    // 15 s in production; a short interval here, so the test waits for a comment, not a clock.
    api.state.sse_keep_alive = Duration::from_millis(50);
    api.router = taskfleet_api::app(api.state.clone());
    let id = api.enqueue_test(&api.user, json!({})).await;
    let mut ev = open(&api, &id, &api.user).await;
    assert_eq!(ev.next().await.unwrap().0, "queued");
    // Nothing changes: the next bytes are a comment line.
    loop {
        if ev.buf.contains(": keep-alive\n") {
            break;
        }
        let frame = tokio::time::timeout(Duration::from_secs(30), ev.body.frame())
            .await
            .expect("a comment within 30 s")
            .unwrap()
            .unwrap();
        if let Ok(bytes) = frame.into_data() {
            ev.buf.push_str(std::str::from_utf8(&bytes).unwrap());
        }
    }
}

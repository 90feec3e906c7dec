//! What the dashboard draws: the live queue status (SSE) and the throughput and latency
//! history, each scoped to what the caller may see.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{setup, Api, TEST_QUEUE};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Claims the oldest queued test task at `started` and completes it at `finished`.
async fn run(api: &Api, started: i64, finished: i64) {
    let c = api.broker.claim(&[TEST_QUEUE], 1, started).await.unwrap();
    api.broker
        .complete_one(TEST_QUEUE, &c[0].id, &c[0].lease, json!({}), finished)
        .await
        .unwrap();
}

fn test_type(h: &Value) -> Value {
    h["task_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_type"] == TEST_QUEUE)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn the_history_counts_finishes_per_bucket_with_their_run_times() {
    let api = setup().await;
    let now = api.now();
    // Two of alice's tasks and one of bob's, each run for 4 minutes, ending 10 minutes ago.
    for key in [&api.user, &api.user, &api.other] {
        api.enqueue_test(key, json!({})).await;
        run(&api, now - 14 * 60_000, now - 10 * 60_000).await;
    }
    let r = api.get("/api/tasks/queue/history", &api.admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let h = r.json();
    assert_eq!(h["scope"], "all");
    assert_eq!(h["bucket_ms"], 60_000);
    let t = test_type(&h);
    let completed: Vec<u64> = serde_json::from_value(t["completed"].clone()).unwrap();
    assert_eq!(completed.len(), 60);
    assert_eq!(completed.iter().sum::<u64>(), 3);
    let i = completed.iter().position(|n| *n == 3).unwrap();
    assert_eq!(t["p50_run_ms"][i], 4 * 60_000);
    assert_eq!(t["p95_run_ms"][i], 4 * 60_000);
    // The bucket of ten minutes ago: counted from the end of the window.
    let since = h["since"].as_i64().unwrap();
    assert_eq!((now - 10 * 60_000 - since) / 60_000, i as i64);
    // An account admin sees acme's two, a user of globex its one, a colleague none.
    for (key, scope, n) in [
        (&api.account_admin, "account", 2),
        (&api.other, "user", 1),
        (&api.colleague, "user", 0),
    ] {
        let h = api.get("/api/tasks/queue/history", key).await.json();
        assert_eq!(h["scope"], scope);
        let completed: Vec<u64> =
            serde_json::from_value(test_type(&h)["completed"].clone()).unwrap();
        assert_eq!(completed.iter().sum::<u64>(), n, "{scope}");
    }
    let r = api
        .get("/api/tasks/queue/history?minutes=2", &api.admin)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().starts_with("minutes"));
}

/// The next `status` event's data from an SSE body.
async fn next_status(body: &mut Body, buf: &mut String) -> Value {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                assert!(block.contains("event: status"), "{block}");
                return serde_json::from_str(data.trim()).unwrap();
            }
            continue;
        }
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("an event within 30 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(bytes) = frame.into_data() {
            buf.push_str(std::str::from_utf8(&bytes).unwrap());
        }
    }
}

#[tokio::test]
async fn the_live_status_sends_the_counts_and_again_when_they_change() {
    let api = setup().await;
    let req = Request::get("/api/tasks/queue/events")
        .header("authorization", format!("Bearer {}", api.account_admin))
        .body(Body::empty())
        .unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut buf = String::new();
    let first = next_status(&mut body, &mut buf).await;
    assert_eq!(first["scope"], "account");
    assert_eq!(first["totals"]["queued"], 0);
    // Another account's task changes nothing acme's admin sees; acme's own does.
    api.enqueue_test(&api.other, json!({})).await;
    api.enqueue_test(&api.user, json!({})).await;
    let next = next_status(&mut body, &mut buf).await;
    assert_eq!(next["totals"]["queued"], 1);
}

#[tokio::test]
async fn the_live_status_takes_the_applications_token_in_its_query() {
    let (mut s, dir) = common::settings();
    let secret = "the-application-backend-shares-this-secret";
    s.auth.jwt.hs256_secret = Some(secret.into());
    let api = common::setup_with(s, dir).await;
    let token = taskfleet_api::token::hs256(
        secret,
        &std::collections::HashMap::from([
            ("sub", json!("ada")),
            ("account_id", json!("acme")),
            ("role", json!("account_admin")),
            ("exp", json!(api.now() / 1000 + 600)),
        ]),
    );
    let req = Request::get(format!("/api/tasks/queue/events?access_token={token}"))
        .body(Body::empty())
        .unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = next_status(&mut body, &mut String::new()).await;
    assert_eq!(first["scope"], "account");
    // Never an API key in a URL.
    let r = api
        .call(
            axum::http::Method::GET,
            &format!("/api/tasks/queue/events?access_token={}", api.admin),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

//! Browsers on other origins (CORS): an origin in `api.cors_origins` gets its preflight
//! answered with the methods and headers the API uses, and `Access-Control-Allow-Origin` on the
//! real call; any other origin gets no `Access-Control-Allow-Origin` at all.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{settings, setup_with, Api};

const APP: &str = "http://app.example.test:5173";
const EVIL: &str = "https://evil.example.test";

async fn setup_cors() -> Api {
    let (mut s, dir) = settings();
    s.api.cors_origins = vec![APP.to_string()];
    setup_with(s, dir).await
}

fn preflight(origin: &str, path: &str, method: &str, headers: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .body(Body::empty())
        .unwrap()
}

fn header(r: &common::Reply, name: &str) -> String {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_allowed_origin_gets_its_preflight_and_its_real_call_answered() {
    let api = setup_cors().await;
    let r = api
        .send(preflight(
            APP,
            "/api/tasks",
            "POST",
            "authorization,content-type,idempotency-key",
        ))
        .await;
    assert!(r.status.is_success(), "preflight: {}", r.status);
    assert_eq!(header(&r, "access-control-allow-origin"), APP);
    let methods = header(&r, "access-control-allow-methods");
    for m in ["get", "post"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = header(&r, "access-control-allow-headers");
    for h in [
        "authorization",
        "content-type",
        "idempotency-key",
        "last-event-id",
    ] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
    assert!(!header(&r, "access-control-max-age").is_empty());
    // The event stream's resume header too.
    let r = api
        .send(preflight(
            APP,
            "/api/tasks/x/events",
            "GET",
            "last-event-id",
        ))
        .await;
    assert_eq!(header(&r, "access-control-allow-origin"), APP);

    // The real call: the answer carries the origin and exposes what a page needs to read.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/tasks")
        .header("origin", APP)
        .header("authorization", format!("Bearer {}", api.user))
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"task_type":"test","request":{"op":"noop"}}"#,
        ))
        .unwrap();
    let r = api.send(req).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(header(&r, "access-control-allow-origin"), APP);
    let exposed = header(&r, "access-control-expose-headers");
    for h in ["x-request-id", "retry-after", "location"] {
        assert!(exposed.contains(h), "{h} not in {exposed}");
    }
    let id = r.json()["task_id"].as_str().unwrap().to_string();
    assert_eq!(header(&r, "location"), format!("/api/tasks/{id}"));
    // An error answer carries it too, so a page can read the error's body.
    let req = Request::builder()
        .uri("/api/tasks")
        .header("origin", APP)
        .body(Body::empty())
        .unwrap();
    let r = api.send(req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, "access-control-allow-origin"), APP);
}

#[tokio::test]
async fn another_origin_gets_no_allow_origin_on_preflight_or_call() {
    let api = setup_cors().await;
    let r = api
        .send(preflight(EVIL, "/api/tasks", "POST", "authorization"))
        .await;
    assert_eq!(header(&r, "access-control-allow-origin"), "");
    let req = Request::builder()
        .uri("/api/tasks")
        .header("origin", EVIL)
        .header("authorization", format!("Bearer {}", api.user))
        .body(Body::empty())
        .unwrap();
    let r = api.send(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(header(&r, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn without_origins_configured_no_origin_is_allowed() {
    let api = common::setup().await;
    let r = api
        .send(preflight(APP, "/api/tasks", "POST", "authorization"))
        .await;
    assert_eq!(header(&r, "access-control-allow-origin"), "");
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

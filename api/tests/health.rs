//! Health, readiness (503 when Redis is down, and so is every Redis-backed route), metrics and
//! the request id.

mod common;

use axum::http::{Method, StatusCode};
use common::{settings, setup};
use serde_json::json;
use taskfleet_api::{app, AppState, Options};

#[tokio::test]
async fn health_and_ready_answer_200_while_redis_is_up() {
    let api = setup().await;
    let r = api.call(Method::GET, "/health", None, None).await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    let r = api.call(Method::GET, "/ready", None, None).await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
}

#[tokio::test]
async fn with_redis_down_ready_and_every_redis_route_say_503_without_details() {
    let (mut s, dir) = settings();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    s.redis.url = format!("redis://127.0.0.1:{port}");
    s.redis.timeout_ms = 500;
    s.auth.admin_key = Some("admin-key-for-the-down-test-0123".into());
    let state = AppState::new(&s, Options::default()).await.unwrap();
    let api = common::Api {
        router: app(state.clone()),
        broker: state.broker.clone(),
        state,
        user: String::new(),
        colleague: String::new(),
        account_admin: String::new(),
        other: String::new(),
        admin: "admin-key-for-the-down-test-0123".into(),
        artifacts: dir,
    };
    let r = api.call(Method::GET, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.call(Method::GET, "/ready", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), "redis_unavailable");
    assert!(!String::from_utf8_lossy(&r.bytes).contains(&port.to_string()));
    assert_eq!(r.headers["retry-after"], "1");
    let r = api
        .post(
            "/api/story/generate",
            &api.admin.clone(),
            json!({"prompt": "a fox"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json());
    let r = api.get("/api/tasks/queue/status", &api.admin.clone()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // A user key cannot even be checked: that is 503 too, not 401.
    let r = api.get("/api/tasks", "tfk_some-user-key").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let api = setup().await;
    api.call(Method::GET, "/health", None, None).await;
    api.get("/api/tasks/0190f3c2-0000-7000-8000-000000000000", &api.user)
        .await;
    api.call(Method::GET, "/nowhere", None, None).await;
    let r = api.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    // OpenMetrics text (prometheus-client's exposition), which Prometheus scrapes natively.
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = String::from_utf8(r.bytes).unwrap();
    assert!(text
        .contains(r#"taskfleet_api_requests_total{method="GET",route="/health",status="200"} 1"#));
    assert!(text.contains(
        r#"taskfleet_api_requests_total{method="GET",route="/api/tasks/{id}",status="404"} 1"#
    ));
    assert!(
        text.contains(r#"route="unmatched",status="404"}"#),
        "{text}"
    );
    assert!(text.contains("taskfleet_api_request_duration_seconds_bucket{"));
    assert!(!text.contains("0190f3c2"), "ids must not become labels");
}

#[tokio::test]
async fn invented_methods_share_one_metrics_label() {
    let api = setup().await;
    for m in ["BREW", "PROPFIND", "X-ANYTHING-1", "X-ANYTHING-2"] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let r = api.call(method.clone(), "/health", None, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        let r = api.call(method, "/no/such/path", None, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m}");
    }
    let text =
        String::from_utf8(api.call(Method::GET, "/metrics", None, None).await.bytes).unwrap();
    for m in ["BREW", "PROPFIND", "X-ANYTHING"] {
        assert!(!text.contains(m), "{m} became a label: {text}");
    }
    assert!(
        text.contains(
            r#"taskfleet_api_requests_total{method="other",route="/health",status="405"} 4"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"method="other",route="unmatched",status="404"} 4"#),
        "{text}"
    );
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_echoes_the_clients() {
    let api = setup().await;
    let r = api.call(Method::GET, "/health", None, None).await;
    assert!(!r.headers["x-request-id"].is_empty());
    let req = axum::http::Request::get("/health")
        .header("x-request-id", "trace-me-1")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(api.send(req).await.headers["x-request-id"], "trace-me-1");
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_error_envelope() {
    let api = setup().await;
    let r = api.call(Method::GET, "/api/nothing", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "no_route".into())
    );
    let r = api.call(Method::DELETE, "/api/tasks", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
}

#[tokio::test]
async fn the_dashboard_page_is_served_without_a_key_and_reads_the_api_with_one() {
    let api = setup().await;
    let r = api.call(Method::GET, "/dashboard", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let page = String::from_utf8(r.bytes.clone()).unwrap();
    assert!(page.contains("<title>taskfleet dashboard</title>"));
    // The page's data comes from these routes, with the key the user enters.
    for route in [
        "/api/tasks/queue/status",
        "/api/tasks?limit=20",
        "Authorization",
    ] {
        assert!(page.contains(route), "dashboard does not use {route}");
    }
}

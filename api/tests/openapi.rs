//! The OpenAPI document lists exactly the routes the router serves, and each has its schemas.

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::setup;

/// Every route of DESIGN §9 this API serves.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/dashboard"),
    ("get", "/api/tasks/types"),
    ("post", "/api/tasks"),
    ("get", "/api/tasks"),
    ("get", "/api/tasks/{id}"),
    ("get", "/api/tasks/{id}/events"),
    ("get", "/api/tasks/{id}/artifacts/{name}"),
    ("post", "/api/tasks/{id}/cancel"),
    ("post", "/api/tasks/{id}/retry"),
    ("get", "/api/me"),
    ("get", "/api/tasks/queue/history"),
    ("get", "/api/tasks/queue/events"),
    ("get", "/api/tasks/queue/status"),
    ("get", "/api/tasks/queue/list"),
    ("post", "/api/tasks/queue/start"),
    ("post", "/api/tasks/queue/stop"),
    ("post", "/api/tasks/queue/cleanup"),
    ("post", "/api/tasks/retry"),
    ("post", "/api/schedules"),
    ("get", "/api/schedules"),
    ("get", "/api/schedules/{id}"),
    ("delete", "/api/schedules/{id}"),
    ("post", "/api/schedules/{id}/pause"),
    ("post", "/api/schedules/{id}/resume"),
    ("post", "/api/video/generate"),
    ("post", "/api/animated-lesson/generate"),
    ("post", "/api/course-video/generate"),
    ("post", "/api/documentation/generate"),
    ("post", "/api/quiz/generate"),
    ("post", "/api/story/generate"),
    ("post", "/api/image/generate"),
    ("post", "/api/voice-generation/generate"),
    ("get", "/api/tasks/{id}/webhooks"),
    ("post", "/api/batches"),
    ("get", "/api/batches/{id}"),
    ("get", "/api/batches/{id}/tasks"),
    ("post", "/api/batches/{id}/cancel"),
    ("get", "/api/webhooks/secrets"),
    ("post", "/api/webhooks/secrets"),
    ("post", "/api/webhooks/secrets/rotate"),
];

#[tokio::test]
async fn the_openapi_document_lists_every_route_the_router_serves() {
    let api = setup().await;
    let r = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);
    // And the router serves each one (a route it lacks answers `no_route` or 405).
    for (m, p) in ROUTES {
        let path = p
            .replace("{id}", "0190f3c2-0000-7000-8000-000000000000")
            .replace("{name}", "a.txt");
        let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let r = api.call(method, &path, None, None).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {p}");
        if r.status == StatusCode::NOT_FOUND {
            assert_ne!(r.code(), "no_route", "{m} {p} is documented but not served");
        }
    }
}

#[tokio::test]
async fn every_request_and_response_schema_is_in_the_document() {
    let api = setup().await;
    let doc = api
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .json();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ErrorBody",
        "EnqueueResponse",
        "CreateTask",
        "Task",
        "TaskList",
        "TaskTypesResponse",
        "CancelResponse",
        "QueueStatusResponse",
        "QueueListResponse",
        "QueueControl",
        "QueueControlResponse",
        "CleanupRequest",
        "CleanupResponse",
        "VideoRequest",
        "AnimatedLessonRequest",
        "CourseVideoRequest",
        "DocumentationRequest",
        "QuizRequest",
        "StoryRequest",
        "ImageRequest",
        "VoiceRequest",
        "HealthResponse",
        "TaskEvent",
        "PreviousEnding",
        "HistoryResponse",
        "StatusEvent",
        "CreateBatch",
        "BatchCreatedResponse",
        "BatchView",
        "BatchTaskList",
        "TaskWebhooks",
        "DeliveryView",
        "SecretList",
        "NewSecret",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
    // Unknown fields are refused, and the schema says so.
    assert_eq!(
        schemas["VideoRequest"]["additionalProperties"],
        serde_json::json!(false)
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn operation_ids_are_unique_so_generated_clients_compile() {
    let doc: serde_json::Value =
        serde_json::from_str(&taskfleet_api::openapi::document_json()).unwrap();
    let mut seen = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                assert!(seen.insert(id.to_string()), "operationId {id} twice");
            }
        }
    }
}

/// The TypeScript client is generated from a copy of the document committed beside it
/// (clients/typescript/openapi.json): a change to the API that is not regenerated fails here.
/// `scripts/gen-ts-client.sh` regenerates both the copy and the client.
#[test]
fn the_typescript_clients_document_is_the_apis_own() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/typescript/openapi.json");
    let committed = std::fs::read_to_string(&path).expect("clients/typescript/openapi.json");
    let now = format!("{}\n", taskfleet_api::openapi::document_json());
    assert!(
        committed == now,
        "clients/typescript is stale: the API's OpenAPI document changed; run scripts/gen-ts-client.sh and commit the result"
    );
}

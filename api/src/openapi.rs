//! The OpenAPI document (GET /openapi.json), generated from the handlers' annotations and the
//! request and response types, so it cannot drift from what they accept.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{events, generate, health, queue, tasks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "taskfleet API",
        description = "Enqueue, inspect and control tasks of a Redis-backed task queue. \
            Errors are `{\"error\": {\"code\", \"message\"}}`. Authenticate with \
            `Authorization: Bearer <key>`."
    ),
    paths(
        health::health,
        health::ready,
        health::metrics,
        tasks::types,
        tasks::create,
        tasks::list,
        tasks::get_one,
        tasks::cancel,
        tasks::artifact,
        events::events,
        generate::video,
        generate::animated_lesson,
        generate::course_video,
        generate::documentation,
        generate::quiz,
        generate::story,
        generate::image,
        generate::voice,
        queue::status,
        queue::list,
        queue::start,
        queue::stop,
        queue::cleanup,
        openapi_json,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "tasks", description = "Enqueue and follow tasks"),
        (name = "generate", description = "Typed enqueue endpoints, one per task type"),
        (name = "queue", description = "Queue status and admin controls"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

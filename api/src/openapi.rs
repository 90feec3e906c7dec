//! The OpenAPI document (GET /openapi.json), generated from the handlers' annotations and the
//! request and response types, so it cannot drift from what they accept.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    batches, dashboard, dead_letters, events, generate, health, live, queue, schedules, tasks,
    webhooks,
};

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
        tasks::me,
        tasks::types,
        tasks::create,
        tasks::list,
        tasks::get_one,
        tasks::cancel,
        tasks::retry,
        tasks::artifact,
        webhooks::task_webhooks,
        batches::create,
        batches::get_one,
        batches::tasks,
        batches::cancel,
        webhooks::list_secrets,
        webhooks::create_secret,
        webhooks::rotate_secret,
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
        live::history,
        live::queue_events,
        queue::start,
        queue::stop,
        queue::cleanup,
        dead_letters::retry_matching,
        schedules::create,
        schedules::list,
        schedules::get_one,
        schedules::pause,
        schedules::resume,
        schedules::delete,
        openapi_json,
        dashboard::dashboard,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth, &CommonErrors, &TypedBodies),
    tags(
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "tasks", description = "Enqueue and follow tasks"),
        (name = "generate", description = "Typed enqueue endpoints, one per task type"),
        (name = "queue", description = "Queue status and admin controls"),
        (name = "schedules", description = "Recurring schedules: a cron in a time zone that enqueues a task at each tick"),
        (name = "batches", description = "Many tasks enqueued all or none, followed and cancelled as one"),
        (name = "webhooks", description = "Webhook deliveries and the account's signing secrets"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key, or the application's token (a JWT: sub, account_id, role, exp)",
                    ))
                    .build(),
            ),
        );
        // EventSource sends no header: the event stream also takes the token in its query.
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "access_token",
                "The application's token (a JWT), on the event streams only (EventSource sends no header)",
            ))),
        );
    }
}

/// The errors that any operation of a kind can answer, added where an annotation does not
/// list them: a keyed operation 401 (no or bad key) and 503 (Redis, which checks the key, is
/// down); one with a body 400, 413, 415 and 422; an admin operation 403. Adding them here,
/// once, keeps the document honest as operations are added.
struct CommonErrors;

/// Operations only an admin may call.
const ADMIN_OPERATIONS: &[&str] = &[
    "/api/tasks/queue/start",
    "/api/tasks/queue/stop",
    "/api/tasks/queue/cleanup",
    "/api/tasks/retry",
];

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let mut add: Vec<(&str, &str)> = Vec::new();
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add.push(("401", "No API key, or one that is not valid"));
                    add.push(("503", "Redis is unreachable"));
                }
                // Every route but the event stream runs under the request timeout.
                if !path.ends_with("/events") {
                    add.push((
                        "408",
                        "The request (its body) took longer than the request timeout",
                    ));
                }
                if op.request_body.is_some() {
                    add.push(("400", "Malformed JSON, or a value out of range (named)"));
                    add.push((
                        "413",
                        "The body is larger than the limit (1 MiB by default)",
                    ));
                    add.push(("415", "The body is not application/json"));
                    add.push(("422", "An unknown field (named) or task type"));
                }
                if ADMIN_OPERATIONS.contains(&path.as_str()) {
                    add.push(("403", "The key is not an admin's"));
                }
                if path == "/api/tasks" && item_is_post(op) || path.ends_with("/generate") {
                    add.push((
                        "429",
                        "The account made more enqueues this minute than its limit (Retry-After says when to retry)",
                    ));
                }
                for (code, description) in add {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// A typed endpoint's body is its catalog request's schema (limits from the catalog's
/// constants) with the enqueue options added as properties: the document shows the body the
/// handler takes, and no limit is written a second time.
struct TypedBodies;

/// The enqueue options a typed endpoint takes next to its request's fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct GenerateOptions {
    priority: Option<crate::enqueue::PriorityParam>,
    /// Run no earlier than this time (ms since the Unix epoch).
    run_at: Option<i64>,
    /// Run no earlier than this many seconds from now (at most 30 days).
    #[schema(maximum = 2592000)]
    delay_seconds: Option<u64>,
    /// An http(s) URL told about the task's end.
    webhook_url: Option<String>,
}

impl Modify for TypedBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::{Ref, RefOr};
        use utoipa::PartialSchema;
        taskfleet::catalog::schema::apply_limits(openapi);
        let RefOr::T(Schema::Object(options)) = GenerateOptions::schema() else {
            return;
        };
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for t in taskfleet::TaskType::ALL {
            let request = request_schema_name(t);
            let Some(RefOr::T(Schema::Object(mut body))) = components.schemas.get(request).cloned()
            else {
                continue;
            };
            for (name, prop) in &options.properties {
                body.properties.insert(name.clone(), prop.clone());
            }
            let name = format!("{request}Body");
            components
                .schemas
                .insert(name.clone(), RefOr::T(Schema::Object(body)));
            let Some(op) = openapi
                .paths
                .paths
                .get_mut(t.endpoint())
                .and_then(|item| item.post.as_mut())
            else {
                continue;
            };
            if let Some(content) = op
                .request_body
                .as_mut()
                .and_then(|b| b.content.get_mut("application/json"))
            {
                content.schema = Some(Ref::from_schema_name(name).into());
            }
        }
    }
}

/// The catalog request type's schema name of a task type.
fn request_schema_name(t: taskfleet::TaskType) -> &'static str {
    use taskfleet::TaskType as T;
    match t {
        T::Video => "VideoRequest",
        T::AnimatedLesson => "AnimatedLessonRequest",
        T::Documentation => "DocumentationRequest",
        T::Quiz => "QuizRequest",
        T::CourseVideo => "CourseVideoRequest",
        T::StoryGeneration => "StoryRequest",
        T::ImageGeneration => "ImageRequest",
        T::VoiceGeneration => "VoiceRequest",
    }
}

/// Whether an operation is an enqueue (`POST /api/tasks`): it has a request body.
fn item_is_post(op: &utoipa::openapi::path::Operation) -> bool {
    op.request_body.is_some()
}

/// The document as pretty JSON, as `taskfleet-api openapi` prints it and
/// clients/typescript/openapi.json holds it.
pub fn document_json() -> String {
    serde_json::to_string_pretty(&ApiDoc::openapi()).expect("the document serializes")
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

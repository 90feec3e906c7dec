//! taskfleet-api: the REST API of DESIGN §9 over the `taskfleet` library. Stateless: every
//! request reads or writes Redis through the broker, so replicas need no coordination.
//!
//! # Layout
//! - [`app`]: the router, every route and layer in one place.
//! - [`state`]: what handlers share (broker, clock, artifact store, metrics).
//! - [`error`]: [`error::AppError`], the only place that picks a status code.
//! - [`extract`]: our JSON and query extractors, so bad input gets our error shape.
//! - [`auth`]: API keys (hashed at rest) and the [`auth::Caller`] extractor.
//! - [`cors`]: which origins' pages may call the API from a browser.
//! - [`token`]: the application's bearer tokens (JWT): HS256, or RS256/ES256 from a JWKS.
//! - [`requests`]: the typed requests of each task type and their limits.
//! - [`enqueue`]: enqueue shared by the generic and typed endpoints; position and estimate.
//! - [`routes`]: handlers: `health`, `tasks`, `events` (SSE), `generate`, `queue`,
//!   `schedules` (recurring schedules), `dead_letters` (bulk retry).
//! - [`workers`]: live workers from their heartbeat keys.
//! - [`metrics`]: request counts and latency, Prometheus text.
//! - [`openapi`]: the OpenAPI document.
//! - [`server`]: the accept loop: HTTP/1.1 connections under a header read timeout, drain.
//! - [`cli`]: `taskfleet-api [serve flags]` and `taskfleet-api keys ...`.

pub mod auth;
pub mod cli;
pub mod cors;
pub mod enqueue;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod requests;
pub mod routes;
pub mod server;
pub mod state;
pub mod token;
pub mod workers;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, Response as HttpResponse};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::routes::{
    batches, dashboard, dead_letters, events, generate, health, live, queue, schedules, tasks,
    webhooks,
};
pub use crate::state::{AppState, Options};

/// Middleware: 408 for a request that takes longer than [`AppState::request_timeout`] to be
/// answered: a body trickled in byte by byte, or a handler stuck past every Redis timeout.
/// Dropping the handler's future is safe: each change is one Redis script, done or not.
async fn request_timeout(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: middleware::Next,
) -> axum::response::Response {
    match state.request_timeout {
        Some(limit) => match tokio::time::timeout(limit, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => AppError::RequestTimeout.into_response(),
        },
        None => next.run(req).await,
    }
}

/// The header carrying each request's id (set if the client did not send one, echoed back).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The whole API as a router; tests drive it with `oneshot`, [`server::serve`] serves it.
pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let mut router = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/dashboard", get(dashboard::dashboard))
        .route("/api/me", get(tasks::me))
        .route("/api/tasks/types", get(tasks::types))
        .route("/api/tasks", post(tasks::create).get(tasks::list))
        .route("/api/tasks/queue/status", get(queue::status))
        .route("/api/tasks/queue/list", get(queue::list))
        .route("/api/tasks/queue/history", get(live::history))
        .route("/api/tasks/queue/start", post(queue::start))
        .route("/api/tasks/queue/stop", post(queue::stop))
        .route("/api/tasks/queue/cleanup", post(queue::cleanup))
        .route("/api/tasks/retry", post(dead_letters::retry_matching))
        .route("/api/schedules", post(schedules::create).get(schedules::list))
        .route(
            "/api/schedules/{id}",
            get(schedules::get_one).delete(schedules::delete),
        )
        .route("/api/schedules/{id}/pause", post(schedules::pause))
        .route("/api/schedules/{id}/resume", post(schedules::resume))
        .route("/api/tasks/{id}", get(tasks::get_one))
        .route("/api/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/tasks/{id}/retry", post(tasks::retry))
        .route("/api/tasks/{id}/artifacts/{name}", get(tasks::artifact))
        .route("/api/tasks/{id}/webhooks", get(webhooks::task_webhooks))
        .route("/api/batches", post(batches::create))
        .route("/api/batches/{id}", get(batches::get_one))
        .route("/api/batches/{id}/tasks", get(batches::tasks))
        .route("/api/batches/{id}/cancel", post(batches::cancel))
        .route(
            "/api/webhooks/secrets",
            post(webhooks::create_secret).get(webhooks::list_secrets),
        )
        .route("/api/webhooks/secrets/rotate", post(webhooks::rotate_secret))
        .route("/api/video/generate", post(generate::video))
        .route(
            "/api/animated-lesson/generate",
            post(generate::animated_lesson),
        )
        .route("/api/course-video/generate", post(generate::course_video))
        .route("/api/documentation/generate", post(generate::documentation))
        .route("/api/quiz/generate", post(generate::quiz))
        .route("/api/story/generate", post(generate::story))
        .route("/api/image/generate", post(generate::image))
        .route("/api/voice-generation/generate", post(generate::voice))
        // Every route above answers (body read, handler done) within the request timeout.
        // The layer wraps routes added before it only: the event stream below is long-lived by
        // design (its handler answers at once; the stream then runs up to its own lifetime).
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            request_timeout,
        ))
        .route("/api/tasks/{id}/events", get(events::events))
        .route("/api/tasks/queue/events", get(live::queue_events))
        .fallback(|| async { AppError::NoRoute })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            AppError::Internal("handler panicked".into()).into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // Debug level: a line per request is a write per request, which at
                    // thousands a second costs more than the request (RUST_LOG=debug shows them).
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_response(
                    |resp: &HttpResponse<_>, latency: Duration, _span: &tracing::Span| {
                        tracing::debug!(status = resp.status().as_u16(), ms = latency.as_millis() as u64, "served");
                    },
                ),
        );
    // CORS inside the request id layers, so a preflight's answer carries its id too.
    if let Some(cors) = state.cors.clone() {
        router = router.layer(cors);
    }
    router
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

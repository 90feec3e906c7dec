//! Liveness, readiness and metrics: no key needed.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AppError, ErrorBody};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` or `ready`.
    pub status: String,
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
    })
}

/// 200 when Redis answers (and the deployment was checked), 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = HealthResponse), (status = 503, body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthResponse>, AppError> {
    state.broker.ping().await?;
    // A deployment that disagrees with the settings is not ready either (503, not a 4xx:
    // the caller did nothing wrong); the reason goes to the log.
    state
        .check_deployment()
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    // The clock follows Redis from the first time it answers.
    state.clock.try_sync(&state.broker).await;
    Ok(Json(HealthResponse {
        status: "ready".into(),
    }))
}

/// Prometheus text: requests by route and status, and their latency.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

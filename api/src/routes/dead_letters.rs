//! Dead letters (issue 13, part 4): POST /api/tasks/retry puts the failed (or cancelled) tasks
//! a filter selects back in their queues, oldest first, at most `limit` per call; an admin only.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use taskfleet::broker::dead_letters::{RetryFilter, DEFAULT_BULK_RETRY};
use taskfleet::{Millis, TaskStatus};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{AppError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Which finished tasks to retry.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetry {
    /// Only this task type (default: every type).
    #[serde(default)]
    pub task_type: Option<String>,
    /// `failed` (the default: the dead letters) or `cancelled`.
    #[serde(default)]
    pub status: Option<String>,
    /// Only tasks that finished at or after this time (ms since the Unix epoch).
    #[serde(default)]
    pub since: Option<Millis>,
    /// Only tasks that finished at or before this time (ms since the Unix epoch).
    #[serde(default)]
    pub until: Option<Millis>,
    /// At most this many tasks (1-1000, default 100), oldest finish first.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// What a bulk retry did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkRetryResponse {
    /// How many tasks went back to their queues.
    pub retried: usize,
    /// Their ids, oldest finish first.
    pub task_ids: Vec<String>,
    /// Whether more tasks matched: call again with the same filter for the next ones.
    pub more: bool,
}

/// Retry the failed (or cancelled) tasks a filter selects, each as POST
/// /api/tasks/{id}/retry does (a new attempt budget, its old ending kept in
/// `previous_errors`), bounded per call.
#[utoipa::path(post, path = "/api/tasks/retry", operation_id = "retry_tasks", tag = "queue", request_body = BulkRetry,
    responses(
        (status = 200, body = BulkRetryResponse),
        (status = 400, description = "A bad status, range or limit (named)", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 422, description = "Unknown field or task type", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry_matching(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<BulkRetry>,
) -> Result<Json<BulkRetryResponse>, AppError> {
    caller.require_admin()?;
    let status = match body.status.as_deref() {
        None | Some("failed") => TaskStatus::Failed,
        Some("cancelled") => TaskStatus::Cancelled,
        Some(_) => return Err(AppError::invalid("status", "\"failed\" or \"cancelled\"")),
    };
    let filter = RetryFilter {
        task_type: body.task_type,
        status,
        since: body.since,
        until: body.until,
        limit: body.limit.unwrap_or(DEFAULT_BULK_RETRY),
    };
    let done = state.broker.retry_matching(&filter, state.at()).await?;
    Ok(Json(BulkRetryResponse {
        retried: done.task_ids.len(),
        task_ids: done.task_ids,
        more: done.more,
    }))
}

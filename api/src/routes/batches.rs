//! Batches (issue 13): many tasks enqueued all or none, read, paged and cancelled as one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use taskfleet::webhooks::DeliveryView;
use taskfleet::{Batch, NewBatch, NewTask, Priority, RateOutcome, TaskStatus, TaskType};
use utoipa::{IntoParams, ToSchema};

use super::tasks::{CreateTask, TaskView};
use crate::auth::Caller;
use crate::enqueue::{run_at, EnqueueOptions};
use crate::error::{AppError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::requests::check_generic;
use crate::state::AppState;

/// The most tasks one batch holds.
pub const MAX_TASKS: usize = taskfleet::broker::MAX_BATCH;

/// A batch to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// 1-1,000 tasks of any types.
    /// Each as `POST /api/tasks` takes it.
    pub tasks: Vec<CreateTask>,
    /// Told once (`batch.finished`, with the counts) when every task has ended.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchCreatedResponse {
    pub batch_id: String,
    /// In the order of `tasks`.
    pub task_ids: Vec<String>,
}

/// Names the field of an error about task `i` under `tasks[i]`.
fn at_index(i: usize, e: AppError) -> AppError {
    match e {
        AppError::Invalid { field, message } => AppError::Invalid {
            field: format!("tasks[{i}].{field}"),
            message,
        },
        AppError::UnknownField(f) => AppError::UnknownField(format!("tasks[{i}].{f}")),
        AppError::UnknownTaskType(t) => AppError::Invalid {
            field: format!("tasks[{i}].task_type"),
            message: format!("unknown task type {t:?}"),
        },
        other => other,
    }
}

/// Enqueue up to 1,000 tasks at once, all or none: every task is checked first (a bad one is
/// named `tasks[i].<field>` and nothing is written).
#[utoipa::path(post, path = "/api/batches", operation_id = "create_batch", tag = "batches", request_body = CreateBatch,
    responses(
        (status = 202, description = "Enqueued, every task", body = BatchCreatedResponse),
        (status = 400, description = "A task is invalid (named `tasks[i].<field>`), or more than 1,000", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "An unknown field", body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBatch>,
) -> Result<Response, AppError> {
    let n = body.tasks.len();
    if n == 0 || n > MAX_TASKS {
        return Err(AppError::invalid(
            "tasks",
            format!("1-{MAX_TASKS} tasks per batch (got {n})"),
        ));
    }
    if let Some(url) = &body.webhook_url {
        taskfleet::webhooks::validate_url("webhook_url", url)?;
    }
    let now = state.now();
    let mut tasks = Vec::with_capacity(n);
    for (i, t) in body.tasks.into_iter().enumerate() {
        let task = (|| {
            state.broker.queue_config(&t.task_type)?;
            let request = match t.task_type.parse::<TaskType>() {
                Ok(tt) => check_generic(tt, t.request)?,
                Err(_) if t.request.is_object() => t.request,
                Err(_) => return Err(AppError::invalid("request", "must be a JSON object")),
            };
            if let Some(url) = &t.webhook_url {
                taskfleet::webhooks::validate_url("webhook_url", url)?;
            }
            let options = EnqueueOptions {
                priority: t.priority,
                run_at: t.run_at,
                delay_seconds: t.delay_seconds,
                webhook_url: t.webhook_url,
            };
            let when = run_at(&options, now)?;
            Ok(NewTask {
                task_type: t.task_type,
                request,
                priority: options.priority.map(Priority::from),
                run_at: when,
                webhook_url: options.webhook_url,
                ..Default::default()
            })
        })()
        .map_err(|e| at_index(i, e))?;
        tasks.push(task);
    }
    if let RateOutcome::Limited {
        limit,
        retry_after_secs,
    } = state
        .broker
        .take_rate(&caller.account_id, n as u64, now)
        .await?
    {
        return Err(AppError::RateLimited {
            limit,
            retry_after_secs,
        });
    }
    let created = state
        .broker
        .enqueue_batch(
            NewBatch {
                tasks,
                account_id: caller.account_id.clone(),
                user_id: caller.user_id.clone(),
                webhook_url: body.webhook_url,
            },
            state.at(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchCreatedResponse {
            batch_id: created.batch_id,
            task_ids: created.task_ids,
        }),
    )
        .into_response())
}

/// The batch if the caller may see it (as for tasks: 404 otherwise, never 403).
async fn load_batch(state: &AppState, caller: &Caller, raw: &str) -> Result<Batch, AppError> {
    let id = super::parse_task_id(raw)?;
    let batch = state.broker.batch(&id).await?.ok_or(AppError::NotFound)?;
    if caller.may_see(Some(&batch.account_id), Some(&batch.user_id)) {
        Ok(batch)
    } else {
        Err(AppError::NotFound)
    }
}

/// Tasks of a batch by state.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct BatchCounts {
    pub scheduled: u64,
    pub queued: u64,
    pub processing: u64,
    pub retrying: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Tasks no longer stored (trimmed by retention after they finished).
    pub missing: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    pub batch_id: String,
    pub account_id: String,
    pub user_id: String,
    pub total: u64,
    pub counts: BatchCounts,
    /// Tasks that reached a terminal state (completed, failed or cancelled).
    pub finished: u64,
    /// 0-100: finished tasks over all.
    pub progress: u8,
    /// Every task ended (detected once; `finished_at` says when).
    pub done: bool,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub cancel_requested: bool,
    pub webhook_url: Option<String>,
    /// The `batch.finished` delivery, once the batch finished (with a webhook_url).
    pub webhook: Option<DeliveryView>,
}

/// A batch: counts by state, progress, done or not.
#[utoipa::path(get, path = "/api/batches/{id}", operation_id = "get_batch", tag = "batches",
    params(("id" = String, Path, description = "Batch id (`<type>.<shard>.batch-<uuid>`)")),
    responses((status = 200, body = BatchView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BatchView>, AppError> {
    let b = load_batch(&state, &caller, &id).await?;
    let statuses = state.broker.batch_statuses(&b).await?;
    let mut c = BatchCounts::default();
    for id in &b.task_ids {
        match statuses.get(id) {
            Some(TaskStatus::Scheduled) => c.scheduled += 1,
            Some(TaskStatus::Queued) => c.queued += 1,
            Some(TaskStatus::Processing) => c.processing += 1,
            Some(TaskStatus::Retrying) => c.retrying += 1,
            Some(TaskStatus::Completed) => c.completed += 1,
            Some(TaskStatus::Failed) => c.failed += 1,
            Some(TaskStatus::Cancelled) => c.cancelled += 1,
            None => c.missing += 1,
        }
    }
    let total = b.task_ids.len() as u64;
    let finished = c.completed + c.failed + c.cancelled + c.missing;
    let webhook = state.broker.batch_webhook(&b).await?;
    Ok(Json(BatchView {
        batch_id: b.id,
        account_id: b.account_id,
        user_id: b.user_id,
        total,
        counts: c,
        finished,
        progress: (finished * 100).checked_div(total).unwrap_or(100) as u8,
        done: b.finished_at.is_some(),
        created_at: b.created_at,
        finished_at: b.finished_at,
        cancel_requested: b.cancel_requested_at.is_some(),
        webhook_url: b.webhook_url,
        webhook,
    }))
}

/// Paging of a batch's tasks.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchTasksQuery {
    /// 1-200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchTaskList {
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A batch's tasks, in the order they were given, a page at a time.
#[utoipa::path(get, path = "/api/batches/{id}/tasks", operation_id = "list_batch_tasks", tag = "batches",
    params(("id" = String, Path, description = "Batch id"), BatchTasksQuery),
    responses((status = 200, body = BatchTaskList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "An unknown query parameter", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn tasks(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<BatchTasksQuery>,
) -> Result<Json<BatchTaskList>, AppError> {
    let limit = q.limit.unwrap_or(super::tasks::DEFAULT_PAGE);
    if !(1..=super::tasks::MAX_PAGE).contains(&limit) {
        return Err(AppError::invalid(
            "limit",
            format!("must be 1-{}", super::tasks::MAX_PAGE),
        ));
    }
    let offset = match q.cursor.as_deref() {
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| AppError::invalid("cursor", "not a cursor this API gave"))?,
        None => 0,
    };
    let b = load_batch(&state, &caller, &id).await?;
    let tasks = state.broker.batch_tasks(&b, offset, limit).await?;
    let end = offset.saturating_add(limit);
    let next_cursor = (end < b.task_ids.len()).then(|| end.to_string());
    Ok(Json(BatchTaskList { tasks, next_cursor }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchCancelResponse {
    pub batch_id: String,
    /// Tasks that were waiting and are now cancelled.
    pub cancelled: u64,
    /// Running tasks whose workers stop them shortly.
    pub cancel_requested: u64,
}

/// Cancel every task of a batch that has not finished; 409 if the batch already finished.
#[utoipa::path(post, path = "/api/batches/{id}/cancel", operation_id = "cancel_batch", tag = "batches",
    params(("id" = String, Path, description = "Batch id")),
    responses((status = 200, body = BatchCancelResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BatchCancelResponse>, AppError> {
    let b = load_batch(&state, &caller, &id).await?;
    if b.finished_at.is_some() {
        return Err(AppError::Conflict("the batch has already finished".into()));
    }
    let (cancelled, cancel_requested) = state.broker.cancel_batch(&b, state.at()).await?;
    Ok(Json(BatchCancelResponse {
        batch_id: b.id,
        cancelled,
        cancel_requested,
    }))
}

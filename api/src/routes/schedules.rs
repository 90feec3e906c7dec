//! Recurring schedules (issue 13, part 2): create, list, get, pause, resume, delete. An admin
//! or an account admin (for its own account) manages them; any caller of the account reads
//! them; another account's schedule is 404 on every route, never 403.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskfleet::schedules::{CatchUp, NewSchedule, Schedule};
use taskfleet::{Priority, Role, TaskType};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::enqueue::PriorityParam;
use crate::error::{AppError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::requests::check_generic;
use crate::state::AppState;

/// A schedule to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Five fields (minute hour day-of-month month day-of-week; `*/5 * * * *`, `0 9 * * MON-FRI`)
    /// or `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub cron: String,
    /// An IANA time zone the cron is read in (`Europe/Berlin`, `UTC`).
    pub timezone: String,
    /// A task type from GET /api/tasks/types.
    pub task_type: String,
    /// The type's request, checked as POST /api/tasks checks it.
    #[schema(value_type = Object)]
    pub request: Value,
    #[serde(default)]
    pub priority: Option<PriorityParam>,
    /// Ticks missed while no worker ran or the schedule was paused: `skip` (the default)
    /// enqueues none, `one` a single task.
    #[serde(default)]
    pub catch_up: Option<CatchUp>,
    /// A name to show (at most 200 characters).
    #[serde(default)]
    pub name: Option<String>,
}

/// A page of schedules.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Paging of the schedule list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    /// 1-200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Another account's schedules (an admin only; an admin without it lists every account's).
    pub account_id: Option<String>,
}

/// 403 unless the caller manages schedules: an admin, or an account admin.
fn require_manager(caller: &Caller) -> Result<(), AppError> {
    match caller.role {
        Role::Admin | Role::AccountAdmin => Ok(()),
        Role::User => Err(AppError::ForbiddenBecause(
            "schedules are managed by an account admin or an admin".into(),
        )),
    }
}

/// The schedule if the caller's account owns it (an admin: any); else 404, as for none.
async fn load_visible(state: &AppState, caller: &Caller, id: &str) -> Result<Schedule, AppError> {
    let s = state
        .broker
        .get_schedule(id)
        .await?
        .ok_or(AppError::ScheduleNotFound)?;
    if caller.is_admin() || s.account_id == caller.account_id {
        Ok(s)
    } else {
        Err(AppError::ScheduleNotFound)
    }
}

fn not_found_is_schedule(e: taskfleet::Error) -> AppError {
    match e {
        taskfleet::Error::NotFound(_) => AppError::ScheduleNotFound,
        e => e.into(),
    }
}

/// Create a recurring schedule for the caller's account.
#[utoipa::path(post, path = "/api/schedules", operation_id = "create_schedule", tag = "schedules", request_body = CreateSchedule,
    responses(
        (status = 201, description = "Created", body = Schedule),
        (status = 400, description = "Invalid cron, time zone, request or value (named)", body = ErrorBody),
        (status = 403, description = "Not an account admin or admin", body = ErrorBody),
        (status = 422, description = "Unknown field or task type", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> Result<Response, AppError> {
    require_manager(&caller)?;
    state.broker.queue_config(&body.task_type)?;
    let request = match body.task_type.parse::<TaskType>() {
        Ok(t) => check_generic(t, body.request)?,
        Err(_) if body.request.is_object() => body.request,
        Err(_) => return Err(AppError::invalid("request", "must be a JSON object")),
    };
    let s = state
        .broker
        .create_schedule(
            NewSchedule {
                cron: body.cron,
                timezone: body.timezone,
                task_type: body.task_type,
                request,
                priority: body.priority.map(Priority::from),
                catch_up: body.catch_up.unwrap_or_default(),
                name: body.name,
                account_id: caller.account_id.clone(),
                user_id: caller.user_id.clone(),
            },
            state.at(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

/// The schedules of the caller's account (an admin: every account's, or `account_id`'s),
/// newest first.
#[utoipa::path(get, path = "/api/schedules", operation_id = "list_schedules", tag = "schedules", params(ScheduleQuery),
    responses((status = 200, body = ScheduleList), (status = 400, body = ErrorBody),
        (status = 403, description = "account_id of another account, not an admin", body = ErrorBody),
        (status = 422, description = "An unknown query parameter (named)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ScheduleQuery>,
) -> Result<Json<ScheduleList>, AppError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid("limit", "1-200"));
    }
    let offset = match q.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| AppError::invalid("cursor", "the next_cursor of a previous page"))?,
    };
    let account = match (&q.account_id, caller.is_admin()) {
        (Some(a), true) => Some(a.clone()),
        (None, true) => None,
        (Some(a), false) if *a != caller.account_id => {
            return Err(AppError::ForbiddenBecause(
                "only an admin lists another account's schedules".into(),
            ))
        }
        (_, false) => Some(caller.account_id.clone()),
    };
    let (schedules, more) = state
        .broker
        .list_schedules(account.as_deref(), offset, limit)
        .await?;
    Ok(Json(ScheduleList {
        next_cursor: more.then(|| (offset + limit).to_string()),
        schedules,
    }))
}

/// One schedule, with its next run and its last task.
#[utoipa::path(get, path = "/api/schedules/{id}", operation_id = "get_schedule", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, body = Schedule), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, AppError> {
    Ok(Json(load_visible(&state, &caller, &id).await?))
}

async fn control(
    state: &AppState,
    caller: &Caller,
    id: &str,
    op: &str,
) -> Result<Option<Schedule>, AppError> {
    let s = load_visible(state, caller, id).await?;
    require_manager(caller)?;
    let b = &state.broker;
    match op {
        "pause" => b.pause_schedule(&s.id).await,
        "resume" => b.resume_schedule(&s.id).await,
        _ => {
            b.delete_schedule(&s.id)
                .await
                .map_err(not_found_is_schedule)?;
            return Ok(None);
        }
    }
    .map_err(not_found_is_schedule)?;
    Ok(Some(
        b.get_schedule(&s.id)
            .await?
            .ok_or(AppError::ScheduleNotFound)?,
    ))
}

/// Pause a schedule: no tick until it is resumed.
#[utoipa::path(post, path = "/api/schedules/{id}/pause", operation_id = "pause_schedule", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, body = Schedule), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, AppError> {
    let s = control(&state, &caller, &id, "pause").await?;
    Ok(Json(s.ok_or(AppError::ScheduleNotFound)?))
}

/// Resume a paused schedule at its next tick; the ticks it missed while paused follow its
/// `catch_up` (`skip`: none; `one`: one task).
#[utoipa::path(post, path = "/api/schedules/{id}/resume", operation_id = "resume_schedule", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, body = Schedule), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Schedule>, AppError> {
    let s = control(&state, &caller, &id, "resume").await?;
    Ok(Json(s.ok_or(AppError::ScheduleNotFound)?))
}

/// Delete a schedule: no tick after this (the tasks it enqueued stay).
#[utoipa::path(delete, path = "/api/schedules/{id}", operation_id = "delete_schedule", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    control(&state, &caller, &id, "delete").await?;
    Ok(StatusCode::NO_CONTENT)
}

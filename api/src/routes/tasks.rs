//! The task endpoints: types, generic enqueue, the caller's list, one task, cancel, artifacts.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskfleet::artifacts::{ByteRange, Opened};
use taskfleet::TEST_QUEUE;
use taskfleet::{Millis, Task, TaskStatus, TaskType};
use utoipa::{IntoParams, ToSchema};

use super::load_owned;
use crate::auth::Caller;
use crate::enqueue::{enqueue, EnqueueOptions, EnqueueResponse, PriorityParam};
use crate::error::{AppError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::requests::check_generic;
use crate::state::AppState;

/// The most tasks one page lists.
pub const MAX_PAGE: usize = 200;
/// The default page size.
pub const DEFAULT_PAGE: usize = 50;
/// With a status filter (or for a user, whose list is filtered by its id), how many index
/// entries one request reads at most before answering with a shorter page and a cursor:
/// bounded work per request.
pub const MAX_SCAN: usize = 5_000;

/// A task as the API shows it: the library's [`Task`] (DESIGN §4), whose lease token is never
/// serialized.
pub type TaskView = Task;

/// One task type and its configuration.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskTypeInfo {
    pub task_type: String,
    pub description: String,
    pub max_attempts: u32,
    pub timeout_minutes: u64,
    /// 1-10: the band a request without a priority gets.
    pub priority_weight: u8,
    pub default_priority: String,
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// The typed endpoint, if the type has one.
    pub endpoint: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskTypesResponse {
    pub task_types: Vec<TaskTypeInfo>,
}

/// Every task type with its configuration.
#[utoipa::path(get, path = "/api/tasks/types", tag = "tasks",
    responses((status = 200, body = TaskTypesResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn types(State(state): State<AppState>, _caller: Caller) -> Json<TaskTypesResponse> {
    let mut out: Vec<TaskTypeInfo> = state
        .catalog
        .iter()
        .map(|(t, c)| TaskTypeInfo {
            task_type: t.to_string(),
            description: c.description.clone(),
            max_attempts: c.max_attempts,
            timeout_minutes: c.timeout_minutes,
            priority_weight: c.priority_weight,
            default_priority: taskfleet::QueueConfig::from(c).default_priority.to_string(),
            backoff_base_secs: c.backoff_base_secs,
            backoff_max_secs: c.backoff_max_secs,
            endpoint: Some(t.endpoint().to_string()),
        })
        .collect();
    if state.test_processors {
        if let Ok(q) = state.broker.queue_config(TEST_QUEUE) {
            out.push(TaskTypeInfo {
                task_type: TEST_QUEUE.to_string(),
                description: "Test processors (noop, echo, sleep, fail, permanent, panic)".into(),
                max_attempts: q.max_attempts,
                timeout_minutes: q.timeout.as_secs().div_ceil(60),
                priority_weight: 5,
                default_priority: q.default_priority.to_string(),
                backoff_base_secs: q.backoff_base.as_secs(),
                backoff_max_secs: q.backoff_max.as_secs(),
                endpoint: None,
            });
        }
    }
    Json(TaskTypesResponse { task_types: out })
}

/// Who the caller is, as the API sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub account_id: String,
    pub user_id: String,
    /// `user`, `account_admin` or `admin`.
    pub role: String,
}

/// Who the credential names (account, user, role): what a page shows and which controls it
/// offers.
#[utoipa::path(get, path = "/api/me", tag = "tasks",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        role: caller.role.as_str().to_string(),
        account_id: caller.account_id,
        user_id: caller.user_id,
    })
}

/// A generic enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// A task type from GET /api/tasks/types.
    pub task_type: String,
    /// The type's request (see the typed endpoints' bodies).
    #[schema(value_type = Object)]
    pub request: Value,
    #[serde(default)]
    pub priority: Option<PriorityParam>,
    /// Run no earlier than this time (ms since the Unix epoch).
    #[serde(default)]
    pub run_at: Option<i64>,
    /// Run no earlier than this many seconds from now (at most 30 days).
    #[serde(default)]
    #[schema(maximum = 2592000)]
    pub delay_seconds: Option<u64>,
    /// An http(s) URL told about the task's end.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// Enqueue a task of any type.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = CreateTask,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Repeat a request safely: the same key returns the first task for 24 h")),
    responses(
        (status = 202, description = "Enqueued", body = EnqueueResponse),
        (status = 400, description = "Malformed JSON or a value out of range", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Unknown field or task type", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<Response, AppError> {
    // Only registered queues: the catalog's, and `test` when the flag is on.
    state.broker.queue_config(&body.task_type)?;
    let request = match body.task_type.parse::<TaskType>() {
        Ok(t) => check_generic(t, body.request)?,
        Err(_) if body.request.is_object() => body.request,
        Err(_) => return Err(AppError::invalid("request", "must be a JSON object")),
    };
    let options = EnqueueOptions {
        priority: body.priority,
        run_at: body.run_at,
        delay_seconds: body.delay_seconds,
        webhook_url: body.webhook_url,
    };
    enqueue(&state, &caller, &headers, &body.task_type, request, options).await
}

/// Filters and paging of the task list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this state.
    pub status: Option<String>,
    /// Only tasks of this type.
    pub task_type: Option<String>,
    /// 1-200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this user's tasks (an account admin or admin; a user's list is always its own).
    pub user_id: Option<String>,
    /// Another account's tasks (an admin only; everyone else lists its own account).
    pub account_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(ms: Millis, id: &str) -> String {
    hex::encode(format!("{ms}:{id}"))
}

fn decode_cursor(c: &str) -> Result<(Millis, String), AppError> {
    let bad = || AppError::invalid("cursor", "not a cursor this API gave");
    let bytes = hex::decode(c).map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    let (ms, id) = s.split_once(':').ok_or_else(bad)?;
    let ms = ms.parse().map_err(|_| bad())?;
    let id = super::parse_task_id(id).map_err(|_| bad())?;
    Ok((ms, id))
}

/// The tasks the caller may see, newest first: a user's own, an account admin's account's (or
/// one user's with `user_id`), an admin's account's or another account's with `account_id`.
#[utoipa::path(get, path = "/api/tasks", tag = "tasks", operation_id = "list_tasks", params(ListQuery),
    responses((status = 200, body = TaskList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Another account's (not an admin) or another user's (a user) list", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<TaskList>, AppError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::invalid("limit", format!("must be 1-{MAX_PAGE}")));
    }
    let status = match q.status.as_deref() {
        Some(s) => Some(s.parse::<TaskStatus>()?),
        None => None,
    };
    let names = state.broker.queue_names();
    let types: Vec<&str> = match q.task_type.as_deref() {
        Some(t) => {
            state.broker.queue_config(t)?;
            vec![t]
        }
        None => names,
    };
    let account = match q.account_id.as_deref() {
        Some(a) if a != caller.account_id => {
            if !caller.is_admin() {
                return Err(AppError::ForbiddenBecause(
                    "only an admin lists another account's tasks".into(),
                ));
            }
            check_owner_id("account_id", a)?;
            a.to_string()
        }
        _ => caller.account_id.clone(),
    };
    let user = match (caller.only_user(), q.user_id.as_deref()) {
        (Some(me), Some(u)) if u != me => {
            return Err(AppError::ForbiddenBecause(
                "a user lists only the tasks it created".into(),
            ))
        }
        (Some(me), _) => Some(me.to_string()),
        (None, u) => u.map(str::to_string),
    };
    let mut cursor = match q.cursor.as_deref() {
        Some(c) => Some(decode_cursor(c)?),
        None => None,
    };
    // A user's list, or one filtered by status, is the account's index read and filtered here
    // (there is no index per user: enqueue writes one per account), bounded by MAX_SCAN.
    let filtered = status.is_some() || user.is_some();
    let mut tasks: Vec<TaskView> = Vec::new();
    let mut scanned = 0;
    let mut exhausted = false;
    // Without a filter one round fills the page; with one, rounds go on until the page is
    // full, the index ends, or MAX_SCAN entries were read.
    while tasks.len() < limit && scanned < MAX_SCAN {
        let batch = if filtered { 200 } else { limit };
        let entries = state
            .broker
            .list_account(&account, &types, cursor.clone(), batch)
            .await?;
        scanned += entries.len();
        let Some(last) = entries.last() else {
            exhausted = true;
            break;
        };
        let short = entries.len() < batch;
        let loaded = load_entries(&state, &entries).await?;
        for (ms, _, id) in &entries {
            cursor = Some((*ms, id.clone()));
            if let Some(t) = loaded.get(id) {
                let user_ok = user
                    .as_deref()
                    .is_none_or(|u| t.user_id.as_deref() == Some(u));
                if user_ok && status.is_none_or(|s| s == t.status) {
                    tasks.push(t.clone());
                    if tasks.len() == limit {
                        break;
                    }
                }
            }
        }
        if short && cursor.as_ref().map(|c| &c.1) == Some(&last.2) {
            exhausted = true;
            break;
        }
    }
    let next_cursor = if exhausted {
        None
    } else {
        cursor.map(|(ms, id)| encode_cursor(ms, &id))
    };
    Ok(Json(TaskList { tasks, next_cursor }))
}

/// An account or user id given in a query: 1-128 printable characters without `:`, `,` or
/// spaces (what keys and tokens may carry).
pub fn check_owner_id(field: &str, v: &str) -> Result<(), AppError> {
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b',');
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            field,
            "1-128 printable characters without ':', ',' or spaces",
        ))
    }
}

/// The tasks of index entries, by id (a task trimmed meanwhile is left out).
async fn load_entries(
    state: &AppState,
    entries: &[(Millis, String, String)],
) -> Result<HashMap<String, Task>, AppError> {
    let mut by_type: HashMap<&str, Vec<String>> = HashMap::new();
    for (_, t, id) in entries {
        by_type.entry(t.as_str()).or_default().push(id.clone());
    }
    let mut out = HashMap::new();
    for (t, ids) in by_type {
        for task in state.broker.get_many(t, &ids).await? {
            out.insert(task.id.clone(), task);
        }
    }
    Ok(out)
}

/// One task.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (`<type>.<shard>.<uuid>`, or a derived id such as a course lesson's)")),
    responses((status = 200, body = TaskView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, AppError> {
    Ok(Json(load_owned(&state, &caller, &id).await?))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelResponse {
    pub task_id: String,
    /// `cancelled` (it was waiting) or `processing` (its worker stops it shortly).
    pub status: String,
    pub cancel_requested: bool,
}

/// Cancel a task: a waiting one ends at once (200), a running one is stopped by its worker
/// (202); 409 if it had already finished.
#[utoipa::path(post, path = "/api/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "Task id (`<type>.<shard>.<uuid>`, or a derived id such as a course lesson's)")),
    responses((status = 200, description = "Cancelled", body = CancelResponse),
        (status = 202, description = "Cancel requested from the worker", body = CancelResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let task = load_owned(&state, &caller, &id).await?;
    let outcome = state.broker.cancel(&task.id, state.at()).await?;
    let (code, status) = match outcome {
        taskfleet::CancelOutcome::Cancelled => (StatusCode::OK, "cancelled"),
        taskfleet::CancelOutcome::Requested => (StatusCode::ACCEPTED, "processing"),
    };
    Ok((
        code,
        Json(CancelResponse {
            task_id: task.id,
            status: status.to_string(),
            cancel_requested: code == StatusCode::ACCEPTED,
        }),
    )
        .into_response())
}

/// Retry a failed or cancelled task: back in its queue with a new attempt budget, its old error
/// kept in `previous_errors`; 409 in any other state. Answers the task as it is now.
#[utoipa::path(post, path = "/api/tasks/{id}/retry", tag = "tasks",
    params(("id" = String, Path, description = "Task id (a UUID, or a derived id such as `<uuid>-lesson-0`)")),
    responses((status = 200, description = "Back in its queue", body = TaskView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Neither failed nor cancelled", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, AppError> {
    let task = load_owned(&state, &caller, &id).await?;
    state.broker.retry(&task.id, state.at()).await?;
    let now = state
        .broker
        .get(&task.id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(Json(now))
}

/// What a request's `Range` header asks of an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeAsked {
    /// No header, another unit, or several ranges: the whole file (RFC 9110 lets a server
    /// ignore a Range it does not serve; several ranges would need multipart/byteranges).
    Whole,
    One(ByteRange),
    /// A bytes range that cannot be read (`bytes=x-y`, `bytes=5-2`): 416, as for one that
    /// selects nothing.
    Malformed,
}

fn range_asked(headers: &HeaderMap) -> RangeAsked {
    let Some(v) = headers.get(header::RANGE) else {
        return RangeAsked::Whole;
    };
    let Some(spec) = v.to_str().ok().and_then(|v| {
        let (unit, spec) = v.trim().split_once('=')?;
        unit.trim().eq_ignore_ascii_case("bytes").then_some(spec)
    }) else {
        return RangeAsked::Whole;
    };
    if spec.contains(',') {
        return RangeAsked::Whole;
    }
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let parsed = match spec.trim().split_once('-') {
        Some(("", last)) => num(last).map(ByteRange::Last),
        Some((first, "")) => num(first).map(ByteRange::From),
        Some((first, last)) => match (num(first), num(last)) {
            (Some(a), Some(b)) if a <= b => Some(ByteRange::FromTo(a, b)),
            _ => None,
        },
        None => None,
    };
    parsed.map_or(RangeAsked::Malformed, RangeAsked::One)
}

/// A file the task produced, with its media type, streamed from the artifact store. A `Range:
/// bytes=first-last` (or `first-`, or `-suffix`) gets 206 with exactly those bytes and
/// `Content-Range`; a range that selects nothing, or cannot be read, gets 416.
#[utoipa::path(get, path = "/api/tasks/{id}/artifacts/{name}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (`<type>.<shard>.<uuid>`, or a derived id such as a course lesson's)"),
        ("name" = String, Path, description = "Artifact name, as in the task's result"),
        ("Range" = Option<String>, Header,
            description = "One byte range: `bytes=first-last`, `bytes=first-` or `bytes=-suffix`; another unit or several ranges are ignored")),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream",
            headers(("Accept-Ranges" = String, description = "`bytes`"),
                ("Content-Length" = u64, description = "The file's size"),
                ("Content-Disposition" = String, description = "`inline; filename=\"<name>\"`"))),
        (status = 206, description = "The bytes of the range asked for", content_type = "application/octet-stream",
            headers(("Accept-Ranges" = String, description = "`bytes`"),
                ("Content-Range" = String, description = "`bytes first-last/size`"),
                ("Content-Length" = u64, description = "The range's length"),
                ("Content-Disposition" = String, description = "`inline; filename=\"<name>\"`"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 416, description = "The range selects none of the file, or cannot be read", body = ErrorBody,
            headers(("Content-Range" = String, description = "`bytes */size`"))),
    ),
    security(("bearer" = [])))]
pub async fn artifact(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let task = load_owned(&state, &caller, &id).await?;
    taskfleet::artifacts::validate_name(&name)?;
    let asked = range_asked(&headers);
    let range = match asked {
        RangeAsked::Whole => None,
        RangeAsked::One(r) => Some(r),
        // Selects nothing of any file: the store still says whether the file exists (404)
        // and how large it is (for 416's `Content-Range: bytes */size`).
        RangeAsked::Malformed => Some(ByteRange::From(u64::MAX)),
    };
    let opened = state
        .artifacts
        .open(&task.id, &name, range)
        .await?
        .ok_or(AppError::ArtifactNotFound)?;
    let (size, sent, body) = match opened {
        Opened::Found { size, range, body } => (size, range, body),
        Opened::Unsatisfiable { size } => return Err(AppError::RangeNotSatisfiable { size }),
    };
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = (
        status,
        [
            (
                header::CONTENT_TYPE,
                taskfleet::artifacts::media_type(&name).to_string(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            // An HTML artifact runs in an opaque origin: it cannot act as this API's pages.
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox allow-scripts".into(),
            ),
            (header::CACHE_CONTROL, "private, max-age=3600".into()),
            (header::ACCEPT_RANGES, "bytes".into()),
            // Names are one segment of [A-Za-z0-9._-] (validate_name): nothing to escape.
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
            // Set, so the stream is sent with a length rather than chunked.
            (header::CONTENT_LENGTH, (sent.end - sent.start).to_string()),
        ],
        Body::from_stream(body),
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        let v = format!("bytes {}-{}/{size}", sent.start, sent.end - 1);
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_are_read_as_one_range_or_ignored() {
        let asked = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::RANGE, v.parse().unwrap());
            range_asked(&h)
        };
        assert_eq!(range_asked(&HeaderMap::new()), RangeAsked::Whole);
        assert_eq!(asked("bytes=1-2"), RangeAsked::One(ByteRange::FromTo(1, 2)));
        assert_eq!(asked("Bytes = 7-"), RangeAsked::One(ByteRange::From(7)));
        assert_eq!(asked("bytes=-9"), RangeAsked::One(ByteRange::Last(9)));
        assert_eq!(asked("items=1-2"), RangeAsked::Whole);
        assert_eq!(asked("bytes=1-2,4-5"), RangeAsked::Whole);
        assert_eq!(asked("bytes=2-1"), RangeAsked::Malformed);
        assert_eq!(asked("bytes=a-"), RangeAsked::Malformed);
        assert_eq!(asked("bytes=-"), RangeAsked::Malformed);
        assert_eq!(asked("bytes=99999999999999999999-"), RangeAsked::Malformed);
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let id = "0190f3c2-0000-7000-8000-000000000000";
        let c = encode_cursor(1234, id);
        assert_eq!(decode_cursor(&c).unwrap(), (1234, id.to_string()));
        assert!(decode_cursor("zz").is_err());
        assert!(decode_cursor(&hex::encode("12:not an id")).is_err());
    }
}

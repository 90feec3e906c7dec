//! The queue endpoints: status (counts, paused, workers, throughput), the claim-order list,
//! and the admin controls start, stop and cleanup.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use taskfleet::{QueuedEntry, TaskStatus};
use utoipa::{IntoParams, ToSchema};

use super::tasks::TaskView;
use crate::auth::Caller;
use crate::error::{AppError, ErrorBody};
use crate::extract::{ApiQuery, OptionalJson};
use crate::state::AppState;
use crate::workers::{read_live, WorkerInfo};

/// The most tasks one queue list shows.
pub const MAX_QUEUE_LIST: usize = 500;
/// How many entries per type a non-admin's queue list reads at most to find its account's
/// (or its own) tasks: bounded work per request, however long the set or the account's history.
pub const MAX_QUEUE_SCAN: usize = 10_000;

/// The most a non-admin's count of one type and state goes to: each is one `ZINTERCARD ...
/// LIMIT`, so a huge account costs Redis a bounded walk and answers "at least this many".
pub const ACCOUNT_COUNT_LIMIT: u64 = 100_000;

/// One type's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TypeStatus {
    pub task_type: String,
    /// Tasks by state (scheduled, queued, processing, retrying, completed, failed, cancelled):
    /// every account's for an admin, the caller's account's for anyone else (each at most
    /// `count_limit`).
    pub counts: BTreeMap<String, u64>,
    /// True while claiming is stopped for this type.
    pub paused: bool,
    /// Tasks completed in the last 60 seconds, every account's; null for a non-admin.
    pub completed_last_minute: Option<u64>,
    /// Measured average run time (busy_ms / completed); null before the first completion.
    pub average_run_ms: Option<u64>,
    /// The type's counters (enqueued, started, completed, failed, retried, cancelled,
    /// recovered, busy_ms), every account's: empty for a non-admin.
    pub stats: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkersStatus {
    /// Workers whose heartbeat key exists.
    pub live: usize,
    /// Their summed concurrency.
    pub slots: u64,
    /// Tasks they run now: all of them for an admin, the caller's account's for anyone else.
    pub in_flight: u64,
    /// Each live worker (id, host, pid, types, ...) for an admin; empty for anyone else.
    pub workers: Vec<WorkerInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueStatusResponse {
    /// `all` (an admin: every account) or `account` (anyone else: the caller's account only).
    pub scope: String,
    /// Tasks by state over all types (in the scope).
    pub totals: BTreeMap<String, u64>,
    /// True when every type is paused.
    pub paused: bool,
    /// Tasks completed in the last 60 seconds, all types and accounts; null for a non-admin.
    pub completed_last_minute: Option<u64>,
    /// For scope `account`: the most any one count goes to (a count equal to it means at
    /// least that many). Null for `all`, whose counts are exact.
    pub count_limit: Option<u64>,
    pub task_types: Vec<TypeStatus>,
    pub workers: WorkersStatus,
}

/// Counts by state per type, paused or not, live workers and throughput. An admin sees every
/// account's counts, the type counters, throughput and each worker (host, pid); anyone else
/// sees only its own account's counts, and of the workers only how many and their slots.
#[utoipa::path(get, path = "/api/tasks/queue/status", tag = "queue",
    responses((status = 200, body = QueueStatusResponse), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<QueueStatusResponse>, AppError> {
    status_for(&state, &caller).await.map(Json)
}

/// The queue status as `caller` may see it (GET /api/tasks/queue/status, and each event of the
/// live stream).
pub async fn status_for(
    state: &AppState,
    caller: &Caller,
) -> Result<QueueStatusResponse, AppError> {
    let Json(s) = if caller.is_admin() {
        admin_status(state).await?
    } else {
        account_status(state, &caller.account_id).await?
    };
    Ok(s)
}

fn zero_totals() -> BTreeMap<String, u64> {
    TaskStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect()
}

fn average_run_ms(stats: &BTreeMap<String, i64>) -> Option<u64> {
    let busy = stats.get("busy_ms").copied().unwrap_or(0);
    let done = stats.get("completed").copied().unwrap_or(0);
    (done > 0).then(|| (busy.max(0) / done) as u64)
}

async fn admin_status(state: &AppState) -> Result<Json<QueueStatusResponse>, AppError> {
    let now = state.now();
    let statuses = state.broker.status().await?;
    let recent = state.broker.completed_since(now - 60_000).await?;
    let workers = read_live(&state.broker).await?;
    let mut totals = zero_totals();
    let mut types = Vec::with_capacity(statuses.len());
    for s in statuses {
        let completed_last_minute = recent.get(&s.task_type).copied().unwrap_or(0);
        for (k, v) in &s.counts {
            *totals.entry(k.clone()).or_default() += v;
        }
        types.push(TypeStatus {
            average_run_ms: average_run_ms(&s.stats),
            task_type: s.task_type,
            counts: s.counts,
            paused: s.paused,
            completed_last_minute: Some(completed_last_minute),
            stats: s.stats,
        });
    }
    Ok(Json(QueueStatusResponse {
        scope: "all".into(),
        totals,
        paused: !types.is_empty() && types.iter().all(|t| t.paused),
        completed_last_minute: Some(types.iter().filter_map(|t| t.completed_last_minute).sum()),
        count_limit: None,
        task_types: types,
        workers: WorkersStatus {
            live: workers.len(),
            slots: workers.iter().map(|w| u64::from(w.concurrency)).sum(),
            in_flight: workers.iter().map(|w| u64::from(w.in_flight)).sum(),
            workers,
        },
    }))
}

/// A non-admin's view: its account's counts (from its index, bounded), whether each type is
/// paused and its average run time (the enqueue estimate shows that anyway), and the fleet's
/// size; nothing about other accounts' tasks and nothing about the machines.
async fn account_status(
    state: &AppState,
    account_id: &str,
) -> Result<Json<QueueStatusResponse>, AppError> {
    let counts = state
        .broker
        .account_counts(account_id, ACCOUNT_COUNT_LIMIT)
        .await?;
    let statuses = state.broker.status().await?;
    let workers = read_live(&state.broker).await?;
    let mut totals = zero_totals();
    let mut types = Vec::with_capacity(counts.len());
    for ((task_type, counts), s) in counts.into_iter().zip(statuses) {
        for (k, v) in &counts {
            *totals.entry(k.clone()).or_default() += v;
        }
        types.push(TypeStatus {
            average_run_ms: average_run_ms(&s.stats),
            task_type,
            counts,
            paused: s.paused,
            completed_last_minute: None,
            stats: BTreeMap::new(),
        });
    }
    Ok(Json(QueueStatusResponse {
        scope: "account".into(),
        paused: !types.is_empty() && types.iter().all(|t| t.paused),
        completed_last_minute: None,
        count_limit: Some(ACCOUNT_COUNT_LIMIT),
        workers: WorkersStatus {
            live: workers.len(),
            slots: workers.iter().map(|w| u64::from(w.concurrency)).sum(),
            in_flight: totals.get("processing").copied().unwrap_or(0),
            workers: Vec::new(),
        },
        totals,
        task_types: types,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueueListQuery {
    /// Only this type.
    pub task_type: Option<String>,
    /// The state listed: `queued` (default, in claim order), `scheduled` and `retrying` (by due
    /// time), `processing` (by lease deadline), `completed`, `failed`, `cancelled` (newest
    /// first).
    pub status: Option<String>,
    /// 1-500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueuedTask {
    /// Its place in its type's set of that state, in the listing's order (for `queued`: how
    /// many tasks of its type run before it, 0 = next).
    pub position: u64,
    pub task: TaskView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueListResponse {
    pub tasks: Vec<QueuedTask>,
    /// False when a non-admin's list stopped after reading its bound of entries
    /// (`MAX_QUEUE_SCAN` per type) before the end of the set: tasks further back are not
    /// shown.
    pub complete: bool,
}

/// Tasks in one state (queued by default) in the order they move: workers' claim order for
/// `queued`, newest first for finished states. An admin sees every account's, an account admin
/// its account's, a user the tasks it created.
#[utoipa::path(get, path = "/api/tasks/queue/list", tag = "queue", operation_id = "list_queue", params(QueueListQuery),
    responses((status = 200, body = QueueListResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<QueueListQuery>,
) -> Result<Json<QueueListResponse>, AppError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_QUEUE_LIST).contains(&limit) {
        return Err(AppError::invalid(
            "limit",
            format!("must be 1-{MAX_QUEUE_LIST}"),
        ));
    }
    let status = match q.status.as_deref() {
        Some(s) => s.parse::<TaskStatus>()?,
        None => TaskStatus::Queued,
    };
    let types: Vec<String> = match q.task_type {
        Some(t) => {
            state.broker.queue_config(&t)?;
            vec![t]
        }
        None => state
            .broker
            .queue_names()
            .into_iter()
            .map(String::from)
            .collect(),
    };
    // Each type's set in its order: an admin's is its head; anyone else's is its account's
    // tasks found by walking the set, bounded by MAX_QUEUE_SCAN entries per type, and a user's
    // is then narrowed to the tasks it created (by their briefs: no index per user).
    let mut all: Vec<(f64, &str, QueuedEntry)> = Vec::new();
    let mut complete = true;
    for t in &types {
        let entries = if caller.is_admin() {
            state.broker.state_head(t, status, limit).await?
        } else {
            let only_user = caller.only_user();
            let want = if only_user.is_some() {
                MAX_QUEUE_SCAN
            } else {
                limit
            };
            let (mut entries, reached_end) = state
                .broker
                .state_of_account(t, status, &caller.account_id, want, MAX_QUEUE_SCAN)
                .await?;
            complete &= reached_end;
            if let Some(user) = only_user {
                let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
                let briefs = state.broker.briefs(t, &ids).await?;
                let mut mine = briefs
                    .into_iter()
                    .map(|b| b.is_some_and(|b| b.user_id.as_deref() == Some(user)));
                entries.retain(|_| mine.next().unwrap_or(false));
                entries.truncate(limit);
            }
            entries
        };
        all.extend(entries.into_iter().map(|e| (e.score, t.as_str(), e)));
    }
    // Across types by the same score: claim order, due time or lease deadline ascending,
    // finish time descending.
    if taskfleet::browse::newest_first(status) {
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.2.id.cmp(&a.2.id)));
    } else {
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.2.id.cmp(&b.2.id)));
    }
    all.truncate(limit);
    let mut by_type: HashMap<&str, Vec<String>> = HashMap::new();
    for (_, t, e) in &all {
        by_type.entry(t).or_default().push(e.id.clone());
    }
    let mut tasks = HashMap::new();
    for (t, ids) in by_type {
        for task in state.broker.get_many(t, &ids).await? {
            tasks.insert(task.id.clone(), task);
        }
    }
    let out = all
        .into_iter()
        .filter_map(|(_, _, e)| {
            let task = tasks.remove(&e.id)?;
            // Moved on between the reads (claimed, cancelled, retried): not in that state now.
            (task.status == status).then_some(QueuedTask {
                position: e.position,
                task,
            })
        })
        .collect();
    Ok(Json(QueueListResponse {
        tasks: out,
        complete,
    }))
}

/// Which queue to start or stop.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueControl {
    /// One type; absent = every type.
    #[serde(default)]
    pub task_type: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueControlResponse {
    pub paused: bool,
    pub task_types: Vec<String>,
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    body: QueueControl,
    pause: bool,
) -> Result<Json<QueueControlResponse>, AppError> {
    caller.require_admin()?;
    let types = match &body.task_type {
        Some(t) => {
            state.broker.queue_config(t)?;
            vec![t.clone()]
        }
        None => state
            .broker
            .queue_names()
            .into_iter()
            .map(String::from)
            .collect(),
    };
    if pause {
        state
            .broker
            .pause(body.task_type.as_deref(), state.at())
            .await?;
    } else {
        state
            .broker
            .resume(body.task_type.as_deref(), state.at())
            .await?;
    }
    Ok(Json(QueueControlResponse {
        paused: pause,
        task_types: types,
    }))
}

/// Resume claiming (admin), for one type or all; running tasks are not affected.
#[utoipa::path(post, path = "/api/tasks/queue/start", tag = "queue",
    request_body(content = Option<QueueControl>, description = "Optional: `{\"task_type\": ...}`"),
    responses((status = 200, body = QueueControlResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<QueueControl>,
) -> Result<Json<QueueControlResponse>, AppError> {
    set_paused(&state, &caller, body, false).await
}

/// Stop claiming (admin), for one type or all; running tasks go on.
#[utoipa::path(post, path = "/api/tasks/queue/stop", tag = "queue",
    request_body(content = Option<QueueControl>, description = "Optional: `{\"task_type\": ...}`"),
    responses((status = 200, body = QueueControlResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stop(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<QueueControl>,
) -> Result<Json<QueueControlResponse>, AppError> {
    set_paused(&state, &caller, body, true).await
}

/// The limit a cleanup without one uses: the seed's `cleanup_stuck_tasks` default.
pub const DEFAULT_CLEANUP_MINUTES: u64 = 30;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    /// Tasks processing longer than this (1-43200) are taken back from their workers; 30 when
    /// absent (and when there is no body at all).
    #[schema(minimum = 1, maximum = 43200, default = 30)]
    #[serde(default = "default_cleanup_minutes")]
    pub max_processing_time_minutes: u64,
}

fn default_cleanup_minutes() -> u64 {
    DEFAULT_CLEANUP_MINUTES
}

impl Default for CleanupRequest {
    fn default() -> Self {
        CleanupRequest {
            max_processing_time_minutes: DEFAULT_CLEANUP_MINUTES,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CleanupResponse {
    /// Tasks taken back: processing longer than the limit (or with an expired lease).
    pub over_limit: usize,
    /// Ids sent back to `queued` (attempts left).
    pub requeued: Vec<String>,
    /// Ids that had no attempts left and ended `failed`.
    pub failed: Vec<String>,
    /// Ids whose cancel had been requested and ended `cancelled`.
    pub cancelled: Vec<String>,
}

/// Recover tasks processing longer than a limit (admin): each goes back to `queued` (or ends
/// `failed` without attempts left), and its worker's lease is void.
#[utoipa::path(post, path = "/api/tasks/queue/cleanup", tag = "queue",
    request_body(content = Option<CleanupRequest>, description = "Optional: without a body, 30 minutes"),
    responses((status = 200, body = CleanupResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cleanup(
    State(state): State<AppState>,
    caller: Caller,
    OptionalJson(body): OptionalJson<CleanupRequest>,
) -> Result<Json<CleanupResponse>, AppError> {
    caller.require_admin()?;
    if !(1..=43_200).contains(&body.max_processing_time_minutes) {
        return Err(AppError::invalid(
            "max_processing_time_minutes",
            "must be 1-43200",
        ));
    }
    let older_than = std::time::Duration::from_secs(body.max_processing_time_minutes * 60);
    // One script per type: tasks whose attempt started longer ago than that go back to
    // `queued` (or `failed` without attempts left) in the same atomic step that voids their
    // lease; "longer ago" by the server's own clock.
    let report = state.broker.recover_stuck(state.at(), older_than).await?;
    let over_limit = report.requeued.len() + report.failed.len() + report.cancelled.len();
    let ids = |v: Vec<(String, String)>| v.into_iter().map(|(_, id)| id).collect();
    Ok(Json(CleanupResponse {
        over_limit,
        requeued: ids(report.requeued),
        failed: ids(report.failed),
        cancelled: ids(report.cancelled),
    }))
}

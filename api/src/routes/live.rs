//! What the dashboard draws: the queue status as a live stream (Server-Sent Events, a new
//! event whenever the counts change), and each type's throughput and latency over the last
//! hour (or up to a day) in 60 buckets.
//!
//! The live stream re-reads the status (one pipelined round trip) every [`LIVE_EVERY`] and
//! sends it only when it changed: cheap, the same for every deployment (one server or a
//! Cluster: no read spans slots), and bounded by the stream limits the task events have.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use taskfleet::{Millis, TaskStatus};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};

use super::events::{StreamCaller, RECONNECT_AFTER};
use super::queue::{status_for, QueueStatusResponse};
use crate::auth::Caller;
use crate::error::{AppError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// How often the live stream looks at the counts.
pub const LIVE_EVERY: Duration = Duration::from_secs(2);
/// How many buckets a history has.
pub const HISTORY_BUCKETS: usize = 60;
/// The longest history, in minutes (a day).
pub const MAX_HISTORY_MINUTES: u64 = 1440;
/// How many of the latest finishes per type and state a history reads for latencies (and, for
/// anyone but an admin, for counts): bounded work per request.
pub const HISTORY_SAMPLE: usize = 500;

/// One event of the live stream (`event: status`), its data the queue status as
/// GET /api/tasks/queue/status answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusEvent {
    /// `status` (or `error` when the stream ends early).
    pub event: String,
    /// A QueueStatusResponse as JSON.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The queue status, live: an event now and whenever the counts change (looked at every 2 s),
/// for as long as the client stays (up to an hour). Scoped like GET /api/tasks/queue/status.
#[utoipa::path(get, path = "/api/tasks/queue/events", tag = "queue",
    params(super::events::EventsQuery),
    responses((status = 200, description = "A stream of `status` events", content_type = "text/event-stream", body = StatusEvent),
        (status = 401, body = ErrorBody),
        (status = 429, description = "This account holds as many open event streams on this server as it may (`too_many_streams`)", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = []), ("access_token" = [])))]
pub async fn queue_events(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
) -> Result<Response, AppError> {
    // Read once before answering: a Redis that is down is a 503, not an empty stream.
    let first = status_for(&state, &caller).await?;
    let place = state.account_streams.try_open(&caller.account_id).ok_or(
        AppError::TooManyAccountStreams {
            limit: state.account_streams.max(),
        },
    )?;
    let permit = state
        .event_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| AppError::TooManyStreams)?;
    let (tx, rx) = mpsc::channel::<Event>(4);
    let keep_alive = state.sse_keep_alive;
    tokio::spawn(async move {
        follow_status(&state, &caller, first, &tx).await;
        drop(permit);
        drop(place);
    });
    let stream = futures::StreamExt::map(ReceiverStream::new(rx), Ok::<Event, Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response())
}

async fn follow_status(
    state: &AppState,
    caller: &Caller,
    first: QueueStatusResponse,
    tx: &mpsc::Sender<Event>,
) {
    let deadline = tokio::time::Instant::now() + state.sse_lifetime;
    let mut last = String::new();
    let mut next = Some(first);
    let mut n: u64 = 0;
    loop {
        let status = match next.take() {
            Some(s) => s,
            None => match status_for(state, caller).await {
                Ok(s) => s,
                Err(_) => {
                    let ev = Event::default().event("error").data(
                        r#"{"error":{"code":"redis_unavailable","message":"the event stream ended early; reconnect"}}"#,
                    );
                    let _ = tx.send(ev).await;
                    return;
                }
            },
        };
        let json = serde_json::to_string(&status).unwrap_or_default();
        if json != last {
            n += 1;
            let mut ev = Event::default()
                .event("status")
                .id(n.to_string())
                .data(&json);
            if n == 1 {
                ev = ev.retry(RECONNECT_AFTER);
            }
            if tx.send(ev).await.is_err() {
                return;
            }
            last = json;
        }
        tokio::select! {
            _ = tokio::time::sleep(LIVE_EVERY) => {}
            _ = tokio::time::sleep_until(deadline) => return,
            _ = state.shutdown.cancelled() => return,
            _ = tx.closed() => return,
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How far back, in minutes (5-1440, default 60); split into 60 buckets.
    #[param(minimum = 5, maximum = 1440)]
    pub minutes: Option<u64>,
}

/// One type's last hour (or the asked window), bucket by bucket, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TypeHistory {
    pub task_type: String,
    /// Tasks completed in each bucket.
    pub completed: Vec<u64>,
    /// Tasks failed for good in each bucket.
    pub failed: Vec<u64>,
    /// Median run time (start of the last attempt to its end) of the bucket's completions, ms;
    /// null for a bucket without one.
    pub p50_run_ms: Vec<Option<u64>>,
    /// 95th percentile of the same.
    pub p95_run_ms: Vec<Option<u64>>,
    /// Median wait (enqueue to the last attempt's start) of the bucket's completions, ms.
    pub p50_wait_ms: Vec<Option<u64>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryResponse {
    /// `all` (an admin), `account` (an account admin) or `user` (a user: its own tasks).
    pub scope: String,
    /// The start of the first bucket, ms since the epoch (the Redis server's clock).
    pub since: Millis,
    /// The width of a bucket, ms.
    pub bucket_ms: Millis,
    /// True when some counts were taken from the latest 500 finishes of a type and state
    /// rather than counted whole (only for `account` and `user`; latencies always come from
    /// those): older buckets may then show fewer than there were.
    pub sampled: bool,
    pub task_types: Vec<TypeHistory>,
}

/// Throughput and latency per type over the last hour (or `minutes`), in 60 buckets: an admin's
/// over every account, anyone else's over what it may see.
#[utoipa::path(get, path = "/api/tasks/queue/history", tag = "queue", params(HistoryQuery),
    responses((status = 200, body = HistoryResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryResponse>, AppError> {
    let minutes = q.minutes.unwrap_or(60);
    if !(5..=MAX_HISTORY_MINUTES).contains(&minutes) {
        return Err(AppError::invalid(
            "minutes",
            format!("must be 5-{MAX_HISTORY_MINUTES}"),
        ));
    }
    let bucket_ms = (minutes * 60_000 / HISTORY_BUCKETS as u64) as Millis;
    let now = state.now();
    // Buckets end at the next whole bucket, so a chart's points stay put between refreshes.
    let end = (now / bucket_ms + 1) * bucket_ms;
    let since = end - bucket_ms * HISTORY_BUCKETS as Millis;
    let mut sampled = false;
    let mut out = Vec::new();
    for t in state.broker.queue_names() {
        let mut h = TypeHistory {
            task_type: t.to_string(),
            completed: vec![0; HISTORY_BUCKETS],
            failed: vec![0; HISTORY_BUCKETS],
            p50_run_ms: vec![None; HISTORY_BUCKETS],
            p95_run_ms: vec![None; HISTORY_BUCKETS],
            p50_wait_ms: vec![None; HISTORY_BUCKETS],
        };
        let bucket_of = |ms: Millis| {
            let i = (ms - since) / bucket_ms;
            (0..HISTORY_BUCKETS as Millis)
                .contains(&i)
                .then_some(i as usize)
        };
        let mut runs: Vec<Vec<u64>> = vec![Vec::new(); HISTORY_BUCKETS];
        let mut waits: Vec<Vec<u64>> = vec![Vec::new(); HISTORY_BUCKETS];
        for status in [TaskStatus::Completed, TaskStatus::Failed] {
            let (count, latest) = state
                .broker
                .finished_since(t, status, since, HISTORY_SAMPLE)
                .await?;
            let ids: Vec<String> = latest.iter().map(|(id, _)| id.clone()).collect();
            let briefs = state.broker.briefs(t, &ids).await?;
            let counts = if status == TaskStatus::Completed {
                &mut h.completed
            } else {
                &mut h.failed
            };
            if caller.is_admin() {
                // Exact, every account's.
                *counts = state
                    .broker
                    .finished_counts(t, status, since, bucket_ms, HISTORY_BUCKETS)
                    .await?;
            } else {
                sampled |= count as usize > latest.len();
            }
            for ((_, finished), brief) in latest.iter().zip(briefs) {
                let Some(b) = brief else { continue };
                if !caller.may_see(b.account_id.as_deref(), b.user_id.as_deref()) {
                    continue;
                }
                let Some(i) = bucket_of(*finished) else {
                    continue;
                };
                if !caller.is_admin() {
                    counts[i] += 1;
                }
                if status == TaskStatus::Completed {
                    if let Some(started) = b.started_at {
                        runs[i].push((finished - started).max(0) as u64);
                        if let Some(created) = b.created_at {
                            waits[i].push((started - created).max(0) as u64);
                        }
                    }
                }
            }
        }
        for i in 0..HISTORY_BUCKETS {
            h.p50_run_ms[i] = percentile(&mut runs[i], 50);
            h.p95_run_ms[i] = percentile(&mut runs[i], 95);
            h.p50_wait_ms[i] = percentile(&mut waits[i], 50);
        }
        out.push(h);
    }
    let scope = match caller.role {
        taskfleet::Role::Admin => "all",
        taskfleet::Role::AccountAdmin => "account",
        taskfleet::Role::User => "user",
    };
    Ok(Json(HistoryResponse {
        scope: scope.into(),
        since,
        bucket_ms,
        sampled,
        task_types: out,
    }))
}

/// The `p`th percentile (nearest rank) of `v`; `None` when empty.
fn percentile(v: &mut [u64], p: usize) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = (p * v.len()).div_ceil(100).max(1);
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&mut [], 50), None);
        assert_eq!(percentile(&mut [7], 95), Some(7));
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50), Some(50));
        assert_eq!(percentile(&mut v, 95), Some(95));
    }
}

//! GET /api/tasks/{id}/events: Server-Sent Events of one task, its current state first, then
//! every change until it ends.
//!
//! Each stream follows its type's events STREAM through the library ([`EventFollower`]:
//! `XREAD BLOCK` on a connection of its own; a blocking read on the shared connection would
//! stall every other call).
//! The last stream id is read before the task, so a change between the two is not missed.
//! Every event sends the whole task as GET /api/tasks/{id} shows it, re-read from its hash, so
//! a client never has to merge partial updates. A stream lives at most `sse_lifetime` and ends
//! at shutdown; clients reconnect (the first event is always the current state).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use taskfleet::EventFollower;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::load_owned;
use super::tasks::TaskView;
use crate::auth::Caller;
use crate::error::{AppError, ErrorBody};
use crate::state::AppState;

/// How long one XREAD blocks; after each, the task is re-read anyway (a safety net for a
/// trimmed stream or a missed entry), so this also bounds how stale a stream can be.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries read per XREAD.
const READ_COUNT: usize = 200;

/// One Server-Sent Event: named by the task's status (or `error` when the stream ends early),
/// its data the task as GET /api/tasks/{id} returns it (a [`TaskView`] as JSON).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaskEvent {
    /// The task's status (`queued`, `processing`, …, `completed`), or `error`.
    pub event: String,
    /// The task as JSON (a TaskView), or for `error` an error body.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// Server-Sent Events of one task.
#[utoipa::path(get, path = "/api/tasks/{id}/events", tag = "tasks",
    params(("id" = String, Path, description = "Task id (`<type>.<shard>.<uuid>`, or a derived id such as a course lesson's)")),
    responses((status = 200, description = "A stream of events, one per state the task is seen in", content_type = "text/event-stream", body = TaskEvent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "This account holds as many open event streams on this server as it may (`too_many_streams`)", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let task = load_owned(&state, &caller, &id).await?;
    // The account's share first (429: that account's to fix), then the process's (503).
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
    let shard = state.broker.shard_of(&task.task_type, &task.id)?;
    let follower = state.broker.follow_events(&shard, BLOCK).await?;
    let (tx, rx) = mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        follow(state, task.id, follower, tx).await;
        // The stream and its connection are gone.
        drop(permit);
        drop(place);
    });
    let stream = futures::StreamExt::map(ReceiverStream::new(rx), Ok::<Event, Infallible>);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Sends the task's state, then each change, until it ends, the client leaves, the lifetime
/// passes or the server shuts down.
async fn follow(state: AppState, id: String, mut follower: EventFollower, tx: mpsc::Sender<Event>) {
    let deadline = tokio::time::Instant::now() + state.sse_lifetime;
    let mut last_sent: Option<String> = None;
    loop {
        // The task as it is now; sent if it changed since the last event.
        let task = match state.broker.get(&id).await {
            Ok(Some(t)) => t,
            Ok(None) => return, // trimmed: nothing more will happen
            Err(e) => {
                let _ = tx.send(error_event(e.into())).await;
                return;
            }
        };
        let terminal = task.status.is_terminal();
        let view: TaskView = task;
        let json = serde_json::to_string(&view).unwrap_or_default();
        if last_sent.as_deref() != Some(json.as_str()) {
            let ev = Event::default().event(view.status.as_str()).data(&json);
            if tx.send(ev).await.is_err() {
                return; // the client left
            }
            last_sent = Some(json);
        }
        if terminal {
            return;
        }
        // Wait for an entry about this task (or the block to pass, or an end).
        loop {
            let read = follower.next(BLOCK, READ_COUNT);
            let entries = tokio::select! {
                r = read => r,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = state.shutdown.cancelled() => return,
                _ = tx.closed() => return,
            };
            match entries {
                // The block passed: re-read the task anyway.
                Ok(entries) if entries.is_empty() => break,
                Ok(entries) if entries.iter().any(|e| e.is_about(&id)) => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(error_event(e.into())).await;
                    return;
                }
            }
        }
    }
}

fn error_event(e: AppError) -> Event {
    use axum::response::IntoResponse;
    let status = e.into_response().status();
    let code = if status.as_u16() == 503 {
        "redis_unavailable"
    } else {
        "internal"
    };
    Event::default().event("error").data(
        serde_json::json!({"error": {"code": code, "message": "the event stream ended early; reconnect"}})
            .to_string(),
    )
}

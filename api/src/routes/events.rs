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
//!
//! For browsers (`EventSource`, which can send neither a header nor a body):
//! - the application's short-lived token may come as `?access_token=` on this route only (an
//!   API key never: a query string ends up in proxies' and browsers' histories);
//! - each event has an `id:`, `<stream entry id>.<hash of the state sent>`: the position in the
//!   type's event stream the state was read at, and which state it was. A reconnect sends it
//!   back as `Last-Event-ID`: the follower resumes from that position, and a state the client
//!   already has is not sent again. A finished task whose last state the client has answers
//!   204, which tells `EventSource` to stop reconnecting;
//! - a comment line every 15 s keeps proxies from closing a quiet stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::{request::Parts, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use taskfleet::EventFollower;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::load_owned;
use super::tasks::TaskView;
use crate::auth::{self, Caller};
use crate::error::{AppError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// How long one XREAD blocks; after each, the task is re-read anyway (a safety net for a
/// trimmed stream or a missed entry), so this also bounds how stale a stream can be.
const BLOCK: Duration = Duration::from_secs(5);
/// Entries read per XREAD.
const READ_COUNT: usize = 200;
/// How often an idle stream sends a comment line, so that proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long `EventSource` waits before reconnecting (the `retry:` of the first event).
pub const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// The query of the event stream.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The application's short-lived token (JWT), for `EventSource`, which cannot send an
    /// `Authorization` header. Only a token: an API key is refused here.
    pub access_token: Option<String>,
}

/// The caller of the event stream: from `Authorization: Bearer`, or else from the query's
/// `access_token` (a token only, never an API key).
pub struct StreamCaller(pub Caller);

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if auth::bearer(parts).is_some() {
            return Caller::from_request_parts(parts, state)
                .await
                .map(StreamCaller);
        }
        let ApiQuery(q) = ApiQuery::<EventsQuery>::from_request_parts(parts, state).await?;
        let caller = match q.access_token.as_deref() {
            None | Some("") => Err(AppError::Unauthorized),
            Some(t) if !crate::token::looks_like_jwt(t) => Err(AppError::InvalidToken {
                code: "unauthorized",
                message: "access_token takes the application's short-lived token (a JWT) only; \
                          send an API key as `Authorization: Bearer <key>`"
                    .into(),
            }),
            Some(t) => auth::authenticate(t, state).await,
        };
        auth::delay_failure(caller, state).await.map(StreamCaller)
    }
}

/// Where a client resumes: the stream position and the state hash of the last event it got.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resume {
    stream_id: String,
    state: String,
}

/// `Last-Event-ID` as this route writes ids (`<ms>-<seq>.<16 hex>`); anything else is ignored
/// (the stream starts afresh, with the current state).
fn resume_point(headers: &HeaderMap) -> Option<Resume> {
    let v = headers.get("last-event-id")?.to_str().ok()?.trim();
    let (stream_id, state) = v.split_once('.')?;
    let (ms, seq) = stream_id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let hex = state.len() == 16 && state.bytes().all(|b| b.is_ascii_hexdigit());
    (digits(ms) && digits(seq) && hex).then(|| Resume {
        stream_id: stream_id.to_string(),
        state: state.to_ascii_lowercase(),
    })
}

/// A short hash of a state as sent (its JSON): tells whether a client already has it.
fn state_hash(json: &str) -> String {
    hex::encode(&Sha256::digest(json.as_bytes())[..8])
}

/// One Server-Sent Event: named by the task's status (or `error` when the stream ends early),
/// its data the task as GET /api/tasks/{id} returns it (a [`TaskView`] as JSON).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaskEvent {
    /// Where to resume from (`Last-Event-ID`): `<stream entry id>.<state hash>`.
    pub id: String,
    /// The task's status (`queued`, `processing`, …, `completed`), or `error`.
    pub event: String,
    /// The task as JSON (a TaskView), or for `error` an error body.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// Server-Sent Events of one task: its state now, then every change until it ends. Each event
/// has an `id` to resume from (`Last-Event-ID`); a finished task whose last state the client
/// already has answers 204.
#[utoipa::path(get, path = "/api/tasks/{id}/events", tag = "tasks",
    params(("id" = String, Path, description = "Task id (`<type>.<shard>.<uuid>`, or a derived id such as a course lesson's)"),
        ("Last-Event-ID" = Option<String>, Header,
            description = "The id of the last event received: resume after it (EventSource sends it when it reconnects)"),
        EventsQuery),
    responses((status = 200, description = "A stream of events, one per state the task is seen in", content_type = "text/event-stream", body = TaskEvent),
        (status = 204, description = "The task has finished and the client already has its last state (EventSource stops reconnecting)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "This account holds as many open event streams on this server as it may (`too_many_streams`)", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = []), ("access_token" = [])))]
pub async fn events(
    State(state): State<AppState>,
    StreamCaller(caller): StreamCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let task = load_owned(&state, &caller, &id).await?;
    let resume = resume_point(&headers);
    if let Some(r) = &resume {
        // Finished, and the client has its last state: nothing will ever come.
        if task.status.is_terminal() && r.state == state_hash(&to_json(&task)) {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
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
    let mut follower = state.broker.follow_events(&shard, BLOCK).await?;
    if let Some(r) = &resume {
        // Entries after the client's position that concern the task make it re-read (and sent
        // if it differs from what the client has); none are missed between the two streams.
        follower.resume_from(r.stream_id.clone());
    }
    let (tx, rx) = mpsc::channel::<Event>(16);
    let client_has = resume.map(|r| r.state);
    let keep_alive = state.sse_keep_alive;
    tokio::spawn(async move {
        follow(state, task.id, follower, client_has, tx).await;
        // The stream and its connection are gone.
        drop(permit);
        drop(place);
    });
    let stream = futures::StreamExt::map(ReceiverStream::new(rx), Ok::<Event, Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response())
}

fn to_json(task: &TaskView) -> String {
    serde_json::to_string(task).unwrap_or_default()
}

/// Sends the task's state, then each change, until it ends, the client leaves, the lifetime
/// passes or the server shuts down.
async fn follow(
    state: AppState,
    id: String,
    mut follower: EventFollower,
    client_has: Option<String>,
    tx: mpsc::Sender<Event>,
) {
    let deadline = tokio::time::Instant::now() + state.sse_lifetime;
    // The hash of the state the client holds: the resumed one, then each one sent.
    let mut last_sent: Option<String> = client_has;
    let mut first = true;
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
        let json = to_json(&view);
        let hash = state_hash(&json);
        if last_sent.as_deref() != Some(hash.as_str()) {
            let mut ev = Event::default()
                .event(view.status.as_str())
                .id(format!("{}.{hash}", follower.last_id()))
                .data(&json);
            if first {
                ev = ev.retry(RECONNECT_AFTER);
                first = false;
            }
            if tx.send(ev).await.is_err() {
                return; // the client left
            }
            last_sent = Some(hash);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_this_route_wrote_are_resumed_from() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("last-event-id", v.parse().unwrap());
            resume_point(&h)
        };
        assert_eq!(
            with("1717000000000-3.00ff00ff00ff00ff"),
            Some(Resume {
                stream_id: "1717000000000-3".into(),
                state: "00ff00ff00ff00ff".into()
            })
        );
        assert_eq!(with("1717000000000-3"), None);
        assert_eq!(with("x-3.00ff00ff00ff00ff"), None);
        assert_eq!(with("1-3.00ff"), None);
        assert_eq!(resume_point(&HeaderMap::new()), None);
        assert_eq!(state_hash("{}").len(), 16);
    }
}

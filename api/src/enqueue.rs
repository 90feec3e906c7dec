//! Enqueue, shared by POST /api/tasks and the typed endpoints: options checked, the task
//! written by the broker (with the caller's Idempotency-Key), and the answer's queue position
//! and completion estimate.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use taskfleet::{Millis, NewTask, Priority, RateOutcome, TaskStatus, TaskType};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::AppError;
use crate::state::AppState;

/// The header that makes an enqueue safe to retry.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The longest `delay_seconds`: 30 days.
pub const MAX_DELAY_SECONDS: u64 = 30 * 24 * 3600;
/// The longest URL a webhook may have.
pub const MAX_WEBHOOK_URL: usize = 2048;

/// A queue band (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityParam {
    Urgent,
    High,
    Normal,
    Low,
}

impl From<PriorityParam> for Priority {
    fn from(p: PriorityParam) -> Priority {
        match p {
            PriorityParam::Urgent => Priority::Urgent,
            PriorityParam::High => Priority::High,
            PriorityParam::Normal => Priority::Normal,
            PriorityParam::Low => Priority::Low,
        }
    }
}

/// What an enqueue may say besides the request.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    pub priority: Option<PriorityParam>,
    pub run_at: Option<i64>,
    pub delay_seconds: Option<u64>,
    pub webhook_url: Option<String>,
}

/// The answer to every enqueue (202).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnqueueResponse {
    pub task_id: String,
    /// `queued` or `scheduled`; for a repeated Idempotency-Key, the first task's current state.
    pub status: String,
    pub task_type: String,
    pub priority: String,
    /// Tasks of this type that run before it (0 = next); null unless queued.
    pub queue_position: Option<u64>,
    /// Minutes until it should be done: its own run time plus its share of the queue ahead.
    pub estimated_completion_minutes: u64,
}

fn validate_webhook(url: &str) -> Result<(), AppError> {
    let lower = url.to_ascii_lowercase();
    let ok = (lower.starts_with("http://") || lower.starts_with("https://"))
        && url.len() <= MAX_WEBHOOK_URL
        && url.len() > "https://".len()
        && url.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            "webhook_url",
            format!("an http(s) URL of at most {MAX_WEBHOOK_URL} characters"),
        ))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = v.to_str().unwrap_or("");
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid(
            "Idempotency-Key",
            "1-255 printable characters without spaces",
        ));
    }
    Ok(Some(key.to_string()))
}

/// When the task may run: `run_at`, or now + `delay_seconds`, or now.
pub(crate) fn run_at(options: &EnqueueOptions, now: Millis) -> Result<Option<Millis>, AppError> {
    match (options.run_at, options.delay_seconds) {
        (Some(_), Some(_)) => Err(AppError::invalid(
            "delay_seconds",
            "give run_at or delay_seconds, not both",
        )),
        (Some(at), None) => {
            if at < 0 {
                return Err(AppError::invalid(
                    "run_at",
                    "milliseconds since the Unix epoch",
                ));
            }
            if at > now + (MAX_DELAY_SECONDS as Millis) * 1000 {
                return Err(AppError::invalid("run_at", "at most 30 days from now"));
            }
            Ok(Some(at))
        }
        (None, Some(d)) => {
            if d > MAX_DELAY_SECONDS {
                return Err(AppError::invalid(
                    "delay_seconds",
                    format!("at most {MAX_DELAY_SECONDS} (30 days)"),
                ));
            }
            Ok(Some(now + d as Millis * 1000))
        }
        (None, None) => Ok(None),
    }
}

/// The catalog's idea of one run of `request`, in minutes (1 for the test queue).
fn catalog_estimate(task_type: &str, request: &Value) -> u64 {
    let minutes = match task_type.parse::<TaskType>() {
        Ok(t) => taskfleet::catalog::estimate_minutes(t, request),
        Err(_) => 1,
    };
    u64::from(minutes.max(1))
}

/// Counts this enqueue against the account's per-minute limit (the library's, shared through
/// Redis by every API replica and worker); 429 past the limit.
pub(crate) async fn rate_limit(state: &AppState, caller: &Caller) -> Result<(), AppError> {
    match state
        .broker
        .take_rate(&caller.account_id, 1, state.now())
        .await?
    {
        RateOutcome::Allowed => Ok(()),
        RateOutcome::Limited {
            limit,
            retry_after_secs,
        } => Err(AppError::RateLimited {
            limit,
            retry_after_secs,
        }),
    }
}

/// What the caller asked for, hashed: the same Idempotency-Key with another request is a 422.
/// The time a delay counts from is left out, so a retry of a delayed enqueue matches.
fn fingerprint(task_type: &str, request: &Value, options: &EnqueueOptions) -> String {
    let canonical = serde_json::json!([
        task_type,
        request,
        options.priority,
        options.run_at,
        options.delay_seconds,
        options.webhook_url,
    ]);
    hex::encode(&Sha256::digest(canonical.to_string().as_bytes())[..16])
}

/// How many times an enqueue whose answer was lost (Redis did not answer in time) is sent
/// again, with the same task id: the id makes the retry find the task if the first call did
/// write it, so the caller gets one task and a true answer either way.
const ENQUEUE_RETRIES: u32 = 2;

/// Enqueues for `caller`; 202 with the position and estimate.
pub async fn enqueue(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    task_type: &str,
    request: Value,
    options: EnqueueOptions,
) -> Result<Response, AppError> {
    let idem = idempotency_key(headers)?;
    if let Some(url) = &options.webhook_url {
        validate_webhook(url)?;
    }
    let now = state.now();
    let run_at = run_at(&options, now)?;
    rate_limit(state, caller).await?;
    let estimate_one = catalog_estimate(task_type, &request);
    let id = state
        .broker
        .new_id(task_type, &caller.account_id, idem.as_deref())?;
    let task = NewTask {
        task_type: task_type.to_string(),
        fingerprint: idem
            .is_some()
            .then(|| fingerprint(task_type, &request, &options)),
        request,
        priority: options.priority.map(Priority::from),
        run_at,
        account_id: caller.account_id.clone(),
        user_id: caller.user_id.clone(),
        webhook_url: options.webhook_url,
        idempotency_key: idem,
        id: Some(id.clone()),
        ..Default::default()
    };
    let mut tries = 0;
    let mut e = loop {
        match state.broker.enqueue(task.clone(), state.at()).await {
            Err(taskfleet::Error::Unavailable(m)) if tries < ENQUEUE_RETRIES => {
                tries += 1;
                tracing::debug!(error = %m, task_id = %id, "enqueue unanswered; sending it again with the same id");
                tokio::time::sleep(std::time::Duration::from_millis(50 << tries)).await;
            }
            other => break other?,
        }
    };
    if e.id == id {
        // Our own id: written by this request (perhaps by a try whose answer was lost).
        e.created = true;
    }
    let (queue_position, minutes) =
        match estimate(state, task_type, &e, run_at, estimate_one, now).await {
            Ok(v) => v,
            Err(err) => {
                // The task is written; a failed estimate must not turn that into an error.
                tracing::warn!(error = %err, task_id = %e.id, "no estimate");
                (e.queue_position, estimate_one)
            }
        };
    let body = EnqueueResponse {
        task_id: e.id,
        status: e.status.to_string(),
        task_type: e.task_type,
        priority: e.priority.to_string(),
        queue_position,
        estimated_completion_minutes: minutes,
    };
    // Where the task is read: a 202's usual pointer, exposed to browsers by the CORS layer.
    let location = HeaderValue::from_str(&format!("/api/tasks/{}", body.task_id)).ok();
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Some(location) = location {
        resp.headers_mut()
            .insert(axum::http::header::LOCATION, location);
    }
    if !e.created {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// Queue position (if queued), and minutes to completion: the wait for the tasks ahead spread
/// over the live workers' slots for this type, plus one run. A run takes the type's measured
/// average (`busy_ms / completed`) once some have completed, else the processor's estimate.
/// The position and the average come back from the enqueue script itself, and the workers'
/// slots from a short-lived cache: no extra round trip for most enqueues.
async fn estimate(
    state: &AppState,
    task_type: &str,
    e: &taskfleet::Enqueued,
    run_at: Option<Millis>,
    estimate_one: u64,
    now: Millis,
) -> taskfleet::Result<(Option<u64>, u64)> {
    let one_ms = e.average_run_ms.unwrap_or(estimate_one * 60_000).max(1);
    let slots = state.workers.capacity(&state.broker, task_type).await?;
    let ahead = e.queue_position.unwrap_or(0);
    let mut total_ms = ahead.div_ceil(slots) * one_ms + one_ms;
    if e.status == TaskStatus::Scheduled {
        total_ms += run_at.map(|at| (at - now).max(0) as u64).unwrap_or(0);
    }
    let position = (e.status == TaskStatus::Queued)
        .then_some(e.queue_position)
        .flatten();
    Ok((position, total_ms.div_ceil(60_000).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_at_and_delay_are_exclusive_and_bounded() {
        let now = 1_000_000;
        let o = |run_at, delay_seconds| EnqueueOptions {
            run_at,
            delay_seconds,
            ..Default::default()
        };
        assert_eq!(run_at(&o(None, Some(5)), now).unwrap(), Some(now + 5_000));
        assert_eq!(run_at(&o(Some(7), None), now).unwrap(), Some(7));
        assert!(run_at(&o(Some(7), Some(5)), now).is_err());
        assert!(run_at(&o(None, Some(MAX_DELAY_SECONDS + 1)), now).is_err());
        assert!(run_at(&o(Some(-1), None), now).is_err());
    }

    #[test]
    fn webhooks_must_be_http_urls() {
        assert!(validate_webhook("https://example.com/hook").is_ok());
        assert!(validate_webhook("ftp://example.com").is_err());
        assert!(validate_webhook("https://exa mple.com").is_err());
    }
}

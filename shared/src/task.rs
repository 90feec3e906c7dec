//! The task model: priorities, states and the task itself. (The closed catalog of task types
//! is the `taskfleet-catalog` crate's, re-exported as [`crate::TaskType`].)

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Milliseconds since the Unix epoch, by the Redis server's clock (see [`crate::clock`]).
pub type Millis = i64;

/// The longest task id.
pub const MAX_TASK_ID: usize = 128;

/// Whether `s` can be a task id: 1-[`MAX_TASK_ID`] of a-z, A-Z, 0-9, `.`, `_`, `-`, not
/// starting with `.`. The ids the library makes (`<type>.<shard>.<uuid>`), the ids it derives
/// from them (a course's lessons) and any a caller chooses: safe in a key, a URL path segment
/// and a directory name.
pub fn is_task_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TASK_ID
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A band of the queue: every urgent task of a type runs before any high one, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Urgent,
    High,
    Normal,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Urgent,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// The band number in queue scores: urgent 0 … low 3.
    pub fn band(self) -> u8 {
        self as u8
    }

    /// The band a type's `priority_weight` (1-10) gives: 9-10 urgent, 7-8 high, 4-6 normal,
    /// 1-3 low.
    pub fn from_weight(weight: u8) -> Priority {
        match weight {
            9.. => Priority::Urgent,
            7..=8 => Priority::High,
            4..=6 => Priority::Normal,
            _ => Priority::Low,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "priority",
                    format!("{s:?} is not one of urgent, high, normal, low"),
                )
            })
    }
}

/// Where a task is in its lifecycle (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Scheduled,
    Queued,
    Processing,
    Retrying,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Scheduled,
        TaskStatus::Queued,
        TaskStatus::Processing,
        TaskStatus::Retrying,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Queued => "queued",
            TaskStatus::Processing => "processing",
            TaskStatus::Retrying => "retrying",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Completed, failed and cancelled tasks never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TaskStatus::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::invalid("status", format!("{s:?} is not a task status")))
    }
}

/// A task as stored in its hash (DESIGN §4), and as the API shows it. The lease token is kept
/// out of JSON (never shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    pub id: String,
    pub task_type: String,
    pub status: TaskStatus,
    pub priority: Priority,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub request: Value,
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    /// ms since the Unix epoch, by the Redis server's clock (as every time here).
    pub created_at: Millis,
    pub run_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub worker_id: Option<String>,
    #[serde(skip)]
    pub lease: Option<String>,
    /// 0-100.
    pub progress: u8,
    pub message: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<Value>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub webhook_url: Option<String>,
    pub parent_id: Option<String>,
    pub batch_id: Option<String>,
    /// How the task ended before each retry from the outside (`POST /api/tasks/{id}/retry`),
    /// oldest first; empty until it is retried.
    pub previous_errors: Vec<PreviousEnding>,
}

/// How a task ended before it was retried from the outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviousEnding {
    /// `failed` or `cancelled`.
    pub status: String,
    /// Its error then (empty if it had none, as a cancel while waiting).
    pub error: String,
    /// Attempts it had used.
    pub attempts: u32,
    /// When it ended (ms since the epoch).
    pub finished_at: Millis,
    /// When it was retried (ms since the epoch).
    pub retried_at: Millis,
}

impl Task {
    /// Reads a task from the fields of its hash (`HGETALL`); `None` if the hash is empty.
    pub fn from_hash(mut h: HashMap<String, String>) -> Result<Option<Task>> {
        if h.is_empty() {
            return Ok(None);
        }
        let mut take = |k: &str| h.remove(k).filter(|v| !v.is_empty());
        let int = |v: Option<String>| v.and_then(|s| s.parse::<i64>().ok());
        let corrupt = |field: &str| Error::Redis(format!("task hash has no valid {field}"));
        let json =
            |v: Option<String>| v.map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s)));
        Ok(Some(Task {
            id: take("id").ok_or_else(|| corrupt("id"))?,
            task_type: take("task_type").ok_or_else(|| corrupt("task_type"))?,
            status: take("status").ok_or_else(|| corrupt("status"))?.parse()?,
            priority: take("priority")
                .ok_or_else(|| corrupt("priority"))?
                .parse()?,
            request: json(take("request")).unwrap_or(Value::Null),
            account_id: take("account_id"),
            user_id: take("user_id"),
            attempts: int(take("attempts")).unwrap_or(0) as u32,
            max_attempts: int(take("max_attempts")).unwrap_or(0) as u32,
            created_at: int(take("created_at")).unwrap_or(0),
            run_at: int(take("run_at")),
            started_at: int(take("started_at")),
            finished_at: int(take("finished_at")),
            worker_id: take("worker_id"),
            lease: take("lease"),
            progress: int(take("progress")).unwrap_or(0).clamp(0, 100) as u8,
            message: take("message"),
            result: json(take("result")),
            error: take("error"),
            cancel_requested: take("cancel_requested").as_deref() == Some("1"),
            webhook_url: take("webhook_url"),
            parent_id: take("parent_id"),
            batch_id: take("batch_id"),
            // Written by retry.lua; a field it cannot read shows as no history, not an error.
            previous_errors: take("previous_errors")
                .and_then(|v| serde_json::from_str(&v).ok())
                .unwrap_or_default(),
        }))
    }
}

/// A task to enqueue. `task_type` is any queue name the broker knows.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub task_type: String,
    pub request: Value,
    /// `None`: the type's default band.
    pub priority: Option<Priority>,
    /// `None` or a time not after now: ready at once.
    pub run_at: Option<Millis>,
    pub account_id: String,
    pub user_id: String,
    pub webhook_url: Option<String>,
    pub parent_id: Option<String>,
    pub batch_id: Option<String>,
    /// The same key from the same account returns the task it first created.
    pub idempotency_key: Option<String>,
    /// `None`: a new UUIDv7.
    pub id: Option<String>,
    /// `None`: the type's `max_attempts`.
    pub max_attempts: Option<u32>,
    /// What the caller asked for, hashed; an Idempotency-Key that comes again with another
    /// fingerprint is refused. `None`: the library's own of the task's fields.
    pub fingerprint: Option<String>,
}

impl NewTask {
    pub fn new(task_type: impl Into<String>, request: Value) -> Self {
        NewTask {
            task_type: task_type.into(),
            request,
            ..Default::default()
        }
    }

    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = Some(p);
        self
    }

    pub fn run_at(mut self, at: Millis) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn owner(mut self, account_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        self.account_id = account_id.into();
        self.user_id = user_id.into();
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn parent(mut self, parent_id: impl Into<String>) -> Self {
        self.parent_id = Some(parent_id.into());
        self
    }
}

/// What enqueue did with one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: String,
    pub task_type: String,
    pub status: TaskStatus,
    pub priority: Priority,
    /// False when an Idempotency-Key found an earlier task: `id` and `status` are that task's.
    pub created: bool,
    /// How many tasks of its type run before it (0 = next), if it is queued; given when one
    /// task is enqueued (not by batches).
    pub queue_position: Option<u64>,
    /// The type's measured average run time (busy_ms / completed) when the task was enqueued,
    /// once one has completed; given when one task is enqueued.
    pub average_run_ms: Option<u64>,
}

/// A task leased to a worker by claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: String,
    pub task_type: String,
    /// The fencing token: every later call about this attempt must present it.
    pub lease: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub max_attempts: u32,
    pub priority: Priority,
    pub created_at: Millis,
    pub request: Value,
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub parent_id: Option<String>,
    /// Called when the task finishes (see the worker's `webhook` module).
    pub webhook_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_priorities_are_refused() {
        assert!(matches!(
            "asap".parse::<Priority>(),
            Err(Error::InvalidInput { .. })
        ));
    }

    #[test]
    fn priority_weight_maps_to_bands() {
        assert_eq!(Priority::from_weight(10), Priority::Urgent);
        assert_eq!(Priority::from_weight(9), Priority::Urgent);
        assert_eq!(Priority::from_weight(8), Priority::High);
        assert_eq!(Priority::from_weight(7), Priority::High);
        assert_eq!(Priority::from_weight(6), Priority::Normal);
        assert_eq!(Priority::from_weight(4), Priority::Normal);
        assert_eq!(Priority::from_weight(3), Priority::Low);
        assert_eq!(Priority::from_weight(1), Priority::Low);
    }
}

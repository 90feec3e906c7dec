//! Processors: the code that does a task's work. One trait, one file per task type, and a
//! closed `match` from [`TaskType`] to processor, so the compiler lists what a new type needs.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use taskfleet::{Broker, TaskType};
use tokio_util::sync::CancellationToken;

pub mod testing;

/// What a failure means: the task is retried (while attempts are left) or fails at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// Transient (a timeout, a busy dependency): worth another attempt.
    Retry(String),
    /// The request cannot succeed (bad input, a missing tool): never retried.
    Permanent(String),
    /// Not done yet, nothing wrong: give the worker slot back and run the task again after
    /// this long, without using up an attempt (a course waiting for its lesson videos).
    Defer(std::time::Duration, String),
}

impl TaskError {
    pub fn message(&self) -> &str {
        match self {
            TaskError::Retry(m) | TaskError::Permanent(m) | TaskError::Defer(_, m) => m,
        }
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// What a processor sees of the task it runs.
#[derive(Clone)]
pub struct TaskContext {
    /// The task id; with `attempt`, the key for idempotent side effects.
    pub task_id: String,
    pub task_type: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub account_id: Option<String>,
    /// Fires when the task is cancelled, its lease is lost, it timed out or the worker stops
    /// for good: stop promptly and return (any result is then discarded).
    pub cancel: CancellationToken,
    /// A directory of this task's own for the files it produces (created on first use).
    pub artifact_dir: PathBuf,
    pub(crate) broker: Broker,
    pub(crate) lease: String,
    pub(crate) span: tracing::Span,
}

impl TaskContext {
    /// Writes progress (0-100) and a message to the task and its events. A lost lease is not
    /// an error here: the cancellation token reports it.
    pub async fn progress(&self, percent: u8, message: &str) {
        if let Err(e) = self
            .broker
            .progress(&self.task_type, &self.task_id, &self.lease, percent, message)
            .await
        {
            tracing::debug!(parent: &self.span, error = %e, "progress not written");
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The broker, for processors that enqueue follow-up work (a course's lesson videos).
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The tracing span of this task.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// A context for calling a processor outside a worker (tests, tools): progress is not
    /// written anywhere that matters unless the lease is real.
    pub fn detached(broker: Broker, task_type: &str, artifact_dir: PathBuf) -> TaskContext {
        TaskContext {
            task_id: format!("detached-{:x}", rand::random::<u64>()),
            task_type: task_type.to_string(),
            attempt: 1,
            account_id: None,
            cancel: CancellationToken::new(),
            artifact_dir,
            broker,
            lease: String::new(),
            span: tracing::Span::none(),
        }
    }
}

/// The work of one task type.
#[async_trait]
pub trait Processor: Send + Sync {
    /// Does the work; the result JSON is stored on the task.
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Value, TaskError>;

    /// How long one run of this request takes, in minutes (at least 1).
    fn estimate_completion_minutes(&self, request: &Value) -> u32;
}

/// A processor for a type whose real processor is not built yet.
struct NotImplemented(TaskType);

#[async_trait]
impl Processor for NotImplemented {
    async fn process(&self, _ctx: &TaskContext, _request: Value) -> Result<Value, TaskError> {
        Err(TaskError::Permanent(format!(
            "{} processing is not implemented in this worker",
            self.0
        )))
    }

    fn estimate_completion_minutes(&self, _request: &Value) -> u32 {
        1
    }
}

/// The processor of each catalog type.
pub fn for_type(t: TaskType) -> Arc<dyn Processor> {
    match t {
        TaskType::Video
        | TaskType::AnimatedLesson
        | TaskType::Documentation
        | TaskType::Quiz
        | TaskType::CourseVideo
        | TaskType::StoryGeneration
        | TaskType::ImageGeneration
        | TaskType::VoiceGeneration => Arc::new(NotImplemented(t)),
    }
}

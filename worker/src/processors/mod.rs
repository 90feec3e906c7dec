//! Processors: the code that does a task's work. One trait, one file per task type, and a
//! closed `match` from [`TaskType`] to processor, so the compiler lists what a new type needs.
//!
//! # Layout
//! - [`requests`]: the typed request of each type and its limits (the API reuses them).
//! - [`voice`] (voice_generation, and narration for the others), [`image`] (image_generation
//!   and the image provider), `render` (the local image renderer), [`text`]
//!   (story_generation, documentation, quiz and the text provider) with the local algorithms
//!   [`story`], [`docs`], [`quiz`]; [`openai`] (the OpenAI-compatible client).
//! - [`video`], [`lesson`] (animated_lesson), [`course`] (course_video, a flow of videos).
//! - [`tools`]: espeak-ng and ffmpeg as child processes that die with their task.
//! - [`sanitize`]: the last pass over every error before it is stored on the task (no paths,
//!   URLs cut to their host); [`for_type`] wraps every processor in it.
//!
//! Idempotency per (task id, attempt): each attempt works in a fresh scratch directory of its
//! own and stores artifacts under fixed names of its task, so a repeated attempt replaces what
//! an earlier one stored instead of adding to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use taskfleet::artifacts::ArtifactStore;
use taskfleet::{At, Broker, Clock, Millis, TaskType};
use tokio_util::sync::CancellationToken;

pub mod course;
pub mod docs;
pub mod image;
pub mod lesson;
pub mod openai;
pub mod quiz;
mod render;
mod seeded;
pub use taskfleet::catalog::requests;
pub mod sanitize;
pub mod story;
pub mod testing;
pub mod text;
pub mod tools;
pub mod video;
pub mod voice;

pub use openai::ProviderSettings;
pub use tools::Tools;

/// What a failure means: the task is retried (while attempts are left) or fails at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// Transient (a timeout, a busy dependency): worth another attempt.
    Retry(String),
    /// The request cannot succeed (bad input, a missing tool): never retried.
    Permanent(String),
}

impl TaskError {
    pub fn message(&self) -> &str {
        match self {
            TaskError::Retry(m) | TaskError::Permanent(m) => m,
        }
    }
}

/// Where a processor's run left its task when nothing went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Done: the result JSON is stored on the task.
    Done(Value),
    /// Not done yet: give the worker slot back and run the task again after this long, with
    /// this message on the task, without using up an attempt (a course waiting for its
    /// lesson videos).
    WaitFor(Duration, String),
}

impl Step {
    /// The result of a done step (tests and tools that run a processor to its end).
    pub fn done(self) -> Option<Value> {
        match self {
            Step::Done(v) => Some(v),
            Step::WaitFor(..) => None,
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
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) span: tracing::Span,
}

impl TaskContext {
    /// Writes progress (0-100) and a message to the task and its events. A lost lease is not
    /// an error here: the cancellation token reports it.
    pub async fn progress(&self, percent: u8, message: &str) {
        if let Err(e) = self
            .broker
            .progress(
                &self.task_type,
                &self.task_id,
                &self.lease,
                percent,
                message,
            )
            .await
        {
            tracing::debug!(parent: &self.span, error = %e, "progress not written");
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Records the tasks this one started (`(type, id)`): when it ends cancelled or failed,
    /// they are cancelled too. Fenced by this attempt's lease.
    pub async fn record_children(&self, children: &[(String, String)]) -> Result<(), TaskError> {
        match self
            .broker
            .set_children(&self.task_type, &self.task_id, &self.lease, children)
            .await
        {
            Ok(()) => Ok(()),
            // Lost its lease: stop; the token fires too.
            Err(taskfleet::Error::StaleLease(_)) => {
                Err(TaskError::Retry("the task's lease was lost".into()))
            }
            Err(e) => Err(broker_error(e)),
        }
    }

    /// The time script calls of this task act at (the server's clock in a worker).
    pub fn at(&self) -> At {
        self.clock.at()
    }

    /// The estimate of the server's time now.
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
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
            clock: Arc::new(taskfleet::clock::SystemClock),
            span: tracing::Span::none(),
        }
    }

    /// Like [`TaskContext::detached`], for an attempt that holds a real lease (`lease`) of the
    /// task `task_id`: progress and children are written, fenced by that lease.
    pub fn with_lease(mut self, task_id: &str, lease: &str, attempt: u32) -> TaskContext {
        self.task_id = task_id.to_string();
        self.lease = lease.to_string();
        self.attempt = attempt;
        self
    }
}

/// The work of one task type.
#[async_trait]
pub trait Processor: Send + Sync {
    /// Does the work: done with its result, or waiting for something; or a failure.
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError>;
}

/// What processors need from the worker: where files go, which text and image providers to
/// use, the external programs, and a few sizes. Built once at start; cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn ArtifactStore>,
    /// `local` by default; `openai` for any OpenAI-compatible chat completions endpoint.
    pub text: ProviderSettings,
    /// `local` by default; `openai` for any OpenAI-compatible images endpoint.
    pub image: ProviderSettings,
    pub tools: Tools,
    /// Width and height of video slides, lesson posters.
    pub video_size: (u32, u32),
    /// How long a course waits between looks at its lesson videos.
    pub course_poll: Duration,
}

/// Default size of video slides and lesson posters.
pub const DEFAULT_VIDEO_SIZE: (u32, u32) = (1280, 720);

impl Deps {
    /// Local providers, the programs found in `PATH`, default sizes.
    pub fn new(store: Arc<dyn ArtifactStore>) -> Deps {
        Deps {
            store,
            text: ProviderSettings::default(),
            image: ProviderSettings::default(),
            tools: Tools::default(),
            video_size: DEFAULT_VIDEO_SIZE,
            course_poll: course::DEFAULT_POLL,
        }
    }

    /// [`Deps::new`] with the settings' providers (`[text]`, `[image]`), programs
    /// (`[tools]`) and sizes and intervals (`[processors]`); a bad value is an error naming
    /// its setting.
    pub fn from_settings(
        store: Arc<dyn ArtifactStore>,
        settings: &taskfleet::Settings,
    ) -> Result<Deps, String> {
        let mut d = Deps::new(store);
        settings.text.check("text")?;
        settings.image.check("image")?;
        d.text = settings.text.clone();
        d.image = settings.image.clone();
        if let Some(p) = &settings.tools.espeak {
            d.tools.espeak = p.clone();
        }
        if let Some(p) = &settings.tools.ffmpeg {
            d.tools.ffmpeg = p.clone();
        }
        if let Some(size) = settings.processors.video_size(requests::IMAGE_SIDE)? {
            d.video_size = size;
        }
        if let Some(poll) = settings.processors.course_poll()? {
            d.course_poll = poll;
        }
        Ok(d)
    }
}

/// The processor of each catalog type, its errors cleaned for the task's owner
/// ([`sanitize::Sanitized`]).
pub fn for_type(t: TaskType, deps: &Deps) -> Arc<dyn Processor> {
    Arc::new(sanitize::Sanitized(processor_of(t, deps)))
}

fn processor_of(t: TaskType, deps: &Deps) -> Arc<dyn Processor> {
    let store = deps.store.clone();
    match t {
        TaskType::VoiceGeneration => Arc::new(voice::VoiceProcessor {
            store,
            tools: deps.tools.clone(),
        }),
        TaskType::ImageGeneration => Arc::new(image::ImageProcessor {
            store,
            images: image::provider(&deps.image),
        }),
        TaskType::StoryGeneration => Arc::new(text::StoryProcessor {
            store,
            text: text::provider(&deps.text),
        }),
        TaskType::Documentation => Arc::new(text::DocumentationProcessor {
            store,
            text: text::provider(&deps.text),
        }),
        TaskType::Quiz => Arc::new(text::QuizProcessor {
            store,
            text: text::provider(&deps.text),
        }),
        TaskType::Video => Arc::new(video::VideoProcessor {
            store,
            images: image::provider(&deps.image),
            tools: deps.tools.clone(),
            size: deps.video_size,
        }),
        TaskType::AnimatedLesson => Arc::new(lesson::AnimatedLessonProcessor {
            store,
            images: image::provider(&deps.image),
            tools: deps.tools.clone(),
            size: deps.video_size,
        }),
        TaskType::CourseVideo => Arc::new(course::CourseVideoProcessor {
            store,
            tools: deps.tools.clone(),
            poll: deps.course_poll,
        }),
    }
}

/// The external programs (espeak-ng, ffmpeg) that are not installed: the worker logs them at
/// start; the types that need them fail `Permanent` naming the program.
pub fn missing_tools() -> Vec<&'static str> {
    Tools::default().missing()
}

/// A request that fails validation: `Permanent`, with the field named.
pub(crate) fn invalid(e: requests::Invalid) -> TaskError {
    TaskError::Permanent(e.to_string())
}

/// An artifact store failure: the store may be back on the next attempt. Its detail (a
/// bucket, an endpoint, a path) goes to the log; the task says the store failed.
pub(crate) fn store_error(e: taskfleet::Error) -> TaskError {
    match e {
        taskfleet::Error::InvalidInput { .. } => TaskError::Permanent(e.to_string()),
        other => {
            tracing::warn!(error = %other, "artifact store failed");
            TaskError::Retry("the artifact store failed".into())
        }
    }
}

/// A broker failure during a processor's own queue calls (a course's lessons).
pub(crate) fn broker_error(e: taskfleet::Error) -> TaskError {
    match e {
        taskfleet::Error::InvalidInput { .. } | taskfleet::Error::UnknownTaskType(_) => {
            TaskError::Permanent(e.to_string())
        }
        other => TaskError::Retry(other.to_string()),
    }
}

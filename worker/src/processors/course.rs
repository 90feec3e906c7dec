//! course_video: a flow. The course enqueues one `video` task per lesson (child tasks with
//! `parent_id` set), then waits (`Step::WaitFor`) so it holds no worker slot while
//! they run; each re-run looks at the children, and when all are completed it joins their MP4s
//! into the course MP4. A failed or cancelled lesson fails the course with the lesson's error.
//!
//! Re-runs never duplicate lessons: a child's id is derived from the course id and the lesson
//! number (`video.<shard>.<course id>-lesson-<i>`), and an enqueue of an id that exists answers with the
//! existing task instead of writing it again.
//!
//! The course records its lessons on its own task (`children`, fenced by its lease) before it
//! enqueues them, so that when the course ends cancelled or failed, wherever that happens (a
//! cancel while it waits, its worker acknowledging a cancel, the recoverer), its unfinished
//! lessons are cancelled too. Its own cancellation token firing (a lost lease, shutdown, a
//! timeout) is not a cancel of the course and cancels nothing. Lessons count against the
//! account's enqueue rate like any enqueue: over it, the course waits for the next window.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use taskfleet::artifacts::ArtifactStore;
use taskfleet::{Broker, NewTask, Task, TaskStatus, TaskType};

use super::requests::DEFAULT_VOICE;
use super::requests::{self, CourseVideoRequest};
use super::tools::{Scratch, Tools};
use super::video::{concat_and_store, VIDEO_ARTIFACT};
use super::voice::{check_voice, round2};
use super::{broker_error, invalid, store_error, Processor, Step, TaskContext, TaskError};

/// How long a course waits between looks at its lessons, by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(15);
/// The course's MP4 artifact.
pub const COURSE_ARTIFACT: &str = "course.mp4";

pub struct CourseVideoProcessor {
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) tools: Tools,
    pub(crate) poll: Duration,
}

/// The id of lesson `i`'s video task: `video.<shard>.<course id>-lesson-<i>`, the same on
/// every run of the course, in the shard it names.
pub fn lesson_task_id(broker: &Broker, course_id: &str, i: usize) -> taskfleet::Result<String> {
    broker.derived_id(TaskType::Video.as_str(), &format!("{course_id}-lesson-{i}"))
}

#[async_trait]
impl Processor for CourseVideoProcessor {
    async fn process(&self, ctx: &TaskContext, request: Value) -> Result<Step, TaskError> {
        let r: CourseVideoRequest = requests::parse(request).map_err(invalid)?;
        self.tools.require_ffmpeg("course_video")?;
        // An unknown voice is refused before any lesson is enqueued, not by its first lesson.
        check_voice(&self.tools, r.voice.as_deref().unwrap_or(DEFAULT_VOICE)).await?;
        let broker = ctx.broker();
        let video = TaskType::Video.as_str();
        let n = r.lessons.len();
        let ids: Vec<String> = (0..n)
            .map(|i| lesson_task_id(broker, &ctx.task_id, i))
            .collect::<taskfleet::Result<_>>()
            .map_err(broker_error)?;
        let mut children = broker.get_many(video, &ids).await.map_err(broker_error)?;
        if children.len() < n {
            let me = broker.get(&ctx.task_id).await.map_err(broker_error)?;
            let account = me
                .as_ref()
                .and_then(|t| t.account_id.clone())
                .or_else(|| ctx.account_id.clone())
                .unwrap_or_default();
            let user = me.and_then(|t| t.user_id).unwrap_or_default();
            let have: Vec<&str> = children.iter().map(|t| t.id.as_str()).collect();
            let mut new = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                if have.contains(&id.as_str()) {
                    continue;
                }
                let request =
                    serde_json::to_value(r.lesson_video(i)).expect("a request serializes");
                let mut t = NewTask::new(video, request)
                    .owner(account.clone(), user.clone())
                    .parent(ctx.task_id.clone());
                t.id = Some(id.clone());
                new.push(t);
            }
            let pairs: Vec<(String, String)> = ids
                .iter()
                .map(|id| (video.to_string(), id.clone()))
                .collect();
            ctx.record_children(&pairs).await?;
            if let taskfleet::RateOutcome::Limited {
                retry_after_secs, ..
            } = broker
                .take_rate(&account, new.len() as u64, ctx.now())
                .await
                .map_err(broker_error)?
            {
                return Ok(Step::WaitFor(
                    Duration::from_secs(retry_after_secs),
                    "waiting for the account's enqueue rate limit".into(),
                ));
            }
            broker
                .enqueue_many(new, ctx.at())
                .await
                .map_err(broker_error)?;
            children = broker.get_many(video, &ids).await.map_err(broker_error)?;
        }
        let by_id = |id: &str| children.iter().find(|t| t.id == id);
        let mut done = 0;
        for (i, id) in ids.iter().enumerate() {
            let Some(t) = by_id(id) else {
                return Err(TaskError::Retry(format!(
                    "lesson {} was not enqueued",
                    i + 1
                )));
            };
            match t.status {
                TaskStatus::Completed => done += 1,
                TaskStatus::Failed => {
                    return Err(TaskError::Permanent(format!(
                        "lesson {} ({:?}, task {}) failed: {}",
                        i + 1,
                        r.lessons[i].title,
                        t.id,
                        t.error.as_deref().unwrap_or("no error recorded")
                    )))
                }
                TaskStatus::Cancelled => {
                    return Err(TaskError::Permanent(format!(
                        "lesson {} ({:?}, task {}) was cancelled",
                        i + 1,
                        r.lessons[i].title,
                        t.id
                    )))
                }
                _ => {}
            }
        }
        if done < n {
            let pct = (80 * done / n) as u8;
            ctx.progress(pct, &format!("{done} of {n} lessons done"))
                .await;
            return Ok(Step::WaitFor(
                self.poll,
                format!("waiting for {} of {n} lessons", n - done),
            ));
        }
        self.join(ctx, &r, &ids, &children).await.map(Step::Done)
    }
}

impl CourseVideoProcessor {
    async fn join(
        &self,
        ctx: &TaskContext,
        r: &CourseVideoRequest,
        ids: &[String],
        children: &[Task],
    ) -> Result<Value, TaskError> {
        ctx.progress(85, "joining the lessons").await;
        let scratch = Scratch::new(&ctx.artifact_dir, ctx.attempt).await?;
        let mut parts = Vec::with_capacity(ids.len());
        let mut lessons = Vec::with_capacity(ids.len());
        let mut total = 0.0;
        for (i, id) in ids.iter().enumerate() {
            let path = scratch.join(format!("lesson-{i}.mp4"));
            let found = self
                .store
                .get_to_file(id, VIDEO_ARTIFACT, &path)
                .await
                .map_err(store_error)?;
            if !found {
                return Err(TaskError::Permanent(format!(
                    "lesson {}'s video (task {id}) is not in the artifact store",
                    i + 1
                )));
            }
            parts.push(path);
            let seconds = children
                .iter()
                .find(|t| &t.id == id)
                .and_then(|t| t.result.as_ref())
                .and_then(|v| v.get("duration_seconds"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            total += seconds;
            lessons.push(
                json!({"task_id": id, "title": r.lessons[i].title, "duration_seconds": seconds}),
            );
        }
        let artifact = concat_and_store(
            ctx,
            &self.tools,
            self.store.as_ref(),
            &parts,
            scratch.path(),
            COURSE_ARTIFACT,
        )
        .await?;
        Ok(json!({
            "title": r.title,
            "artifacts": [artifact],
            "duration_seconds": round2(total),
            "lessons": lessons,
        }))
    }
}

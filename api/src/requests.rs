//! The typed requests of DESIGN §9, one struct per task type, as the OpenAPI document shows
//! them: unknown fields are refused (422, named with their path by [`crate::extract`]). The
//! limits (400, naming the field) are the worker's own (`taskfleet_worker::processors::
//! requests`), so the API never accepts what a processor would refuse. The same structs check
//! a generic enqueue's `request` of a catalog type: both ways in accept the same requests.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskfleet::TaskType;
use utoipa::ToSchema;

use crate::enqueue::{EnqueueOptions, PriorityParam};
use crate::error::AppError;
use crate::extract;
use taskfleet_worker::processors::requests as worker_requests;

/// A typed request: its type and its limits.
pub trait TypedRequest: Serialize + serde::de::DeserializeOwned {
    const TASK_TYPE: TaskType;
    /// Checks the limits (the worker's); the error names the field.
    fn validate(&self) -> Result<(), AppError> {
        let v = serde_json::to_value(self).map_err(|e| AppError::Internal(e.to_string()))?;
        worker_requests::validate_for(Self::TASK_TYPE, &v)
            .map_err(|e| AppError::invalid(e.field, e.message))
    }
    /// The enqueue options sent along with the request fields.
    fn options(&self) -> EnqueueOptions;
}

/// Declares a typed request with its own fields plus the enqueue options every typed
/// endpoint also takes (they are not part of the stored request).
macro_rules! typed_request {
    (
        $(#[$meta:meta])*
        $name:ident for $task_type:expr => {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Queue band: `urgent`, `high`, `normal` or `low` (default: the type's).
            #[serde(default, skip_serializing)]
            pub priority: Option<PriorityParam>,
            /// Run no earlier than this time (ms since the Unix epoch).
            #[serde(default, skip_serializing)]
            pub run_at: Option<i64>,
            /// Run no earlier than this many seconds from now (at most 30 days).
            #[serde(default, skip_serializing)]
            #[schema(maximum = 2592000)]
            pub delay_seconds: Option<u64>,
            /// An http(s) URL told about the task's end.
            #[serde(default, skip_serializing)]
            pub webhook_url: Option<String>,
        }

        impl $name {
            fn enqueue_options(&self) -> EnqueueOptions {
                EnqueueOptions {
                    priority: self.priority,
                    run_at: self.run_at,
                    delay_seconds: self.delay_seconds,
                    webhook_url: self.webhook_url.clone(),
                }
            }
        }

        impl TypedRequest for $name {
            const TASK_TYPE: TaskType = $task_type;
            fn options(&self) -> EnqueueOptions {
                self.enqueue_options()
            }
        }
    };
}

/// Length of a story.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoryLength {
    Short,
    Medium,
    Long,
}

/// Output format of documentation.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocFormat {
    Markdown,
    Html,
}

typed_request! {
    /// A story from a prompt.
    StoryRequest for TaskType::StoryGeneration => {
        /// What the story is about (1-20,000 characters).
        prompt: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        length: Option<StoryLength>,
        /// Who it is for (at most 200 characters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    }
}

typed_request! {
    /// An image drawn from a prompt.
    ImageRequest for TaskType::ImageGeneration => {
        /// What to draw (1-20,000 characters).
        prompt: String,
        /// Pixels, 64-2048 (default 512).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 64, maximum = 2048)]
        width: Option<u32>,
        /// Pixels, 64-2048 (default 512).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 64, maximum = 2048)]
        height: Option<u32>,
    }
}

typed_request! {
    /// Speech audio from text.
    VoiceRequest for TaskType::VoiceGeneration => {
        /// What to say (1-20,000 characters, at most an hour of speech at its speed).
        text: String,
        /// An espeak-ng voice name such as `en`, `en-us` or `de+f3`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
        /// Words per minute, 80-400.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 80, maximum = 400)]
        speed: Option<u32>,
    }
}

typed_request! {
    /// Reference documentation from code or prose.
    DocumentationRequest for TaskType::Documentation => {
        /// A title (at most 200 characters).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// The code or prose to document (1-200,000 characters).
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<DocFormat>,
    }
}

typed_request! {
    /// Quiz questions from a text.
    QuizRequest for TaskType::Quiz => {
        /// The text to ask about (1-200,000 characters).
        source_text: String,
        /// How many questions, 1-50.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(minimum = 1, maximum = 50)]
        num_questions: Option<u32>,
    }
}

/// One slide of a video.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Slide {
    /// 1-200 characters.
    pub title: String,
    /// Shown and narrated (1-20,000 characters).
    pub text: String,
}

typed_request! {
    /// A narrated video from slides.
    VideoRequest for TaskType::Video => {
        /// 1-200 characters.
        title: String,
        /// 1-100 slides, narrating at most 60,000 characters and an hour of speech together.
        #[schema(min_items = 1, max_items = 100)]
        slides: Vec<Slide>,
        /// An espeak-ng voice name such as `en`, `en-us` or `de+f3`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
    }
}

/// One step of an animated lesson.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// 1-20,000 characters.
    pub text: String,
}

typed_request! {
    /// A self-contained animated HTML lesson.
    AnimatedLessonRequest for TaskType::AnimatedLesson => {
        /// 1-200 characters.
        title: String,
        /// 1-100 steps, narrating at most 60,000 characters and an hour of speech together.
        #[schema(min_items = 1, max_items = 100)]
        steps: Vec<Step>,
        /// An espeak-ng voice name such as `en`, `en-us` or `de+f3`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
    }
}

/// One lesson of a course video.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    /// 1-200 characters.
    pub title: String,
    /// 1-100 slides.
    #[schema(min_items = 1, max_items = 100)]
    pub slides: Vec<Slide>,
}

typed_request! {
    /// A course video made of lesson videos.
    CourseVideoRequest for TaskType::CourseVideo => {
        /// 1-200 characters.
        title: String,
        /// 1-50 lessons, narrating at most 60,000 characters and an hour of speech together.
        #[schema(min_items = 1, max_items = 50)]
        lessons: Vec<Lesson>,
        /// An espeak-ng voice name such as `en`, `en-us` or `de+f3`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
    }
}

/// Validates a request of a typed endpoint; returns the request to store and its options.
pub fn typed<R: TypedRequest>(req: R) -> Result<(Value, EnqueueOptions), AppError> {
    req.validate()?;
    let options = req.options();
    let value = serde_json::to_value(&req).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok((value, options))
}

/// Validates a generic enqueue's `request` for a catalog type as its typed endpoint would
/// (field paths under `request.`); returns it normalized.
pub fn check_generic(t: TaskType, request: Value) -> Result<Value, AppError> {
    fn one<R: TypedRequest>(request: Value) -> Result<Value, AppError> {
        let r: R = extract::from_value("request", request)?;
        let opts = r.options();
        if opts.priority.is_some()
            || opts.run_at.is_some()
            || opts.delay_seconds.is_some()
            || opts.webhook_url.is_some()
        {
            return Err(AppError::invalid(
                "request",
                "priority, run_at, delay_seconds and webhook_url go next to `request`, not in it",
            ));
        }
        r.validate().map_err(|e| match e {
            AppError::Invalid { field, message } => AppError::Invalid {
                field: format!("request.{field}"),
                message,
            },
            other => other,
        })?;
        serde_json::to_value(&r).map_err(|e| AppError::Internal(e.to_string()))
    }
    match t {
        TaskType::Video => one::<VideoRequest>(request),
        TaskType::AnimatedLesson => one::<AnimatedLessonRequest>(request),
        TaskType::Documentation => one::<DocumentationRequest>(request),
        TaskType::Quiz => one::<QuizRequest>(request),
        TaskType::CourseVideo => one::<CourseVideoRequest>(request),
        TaskType::StoryGeneration => one::<StoryRequest>(request),
        TaskType::ImageGeneration => one::<ImageRequest>(request),
        TaskType::VoiceGeneration => one::<VoiceRequest>(request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(e: AppError) -> String {
        match e {
            AppError::Invalid { field, .. } => format!("400 {field}"),
            AppError::UnknownField(f) => format!("422 {f}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn limits_name_the_field_that_is_out_of_range() {
        let e = check_generic(
            TaskType::ImageGeneration,
            json!({"prompt": "a cat", "width": 4096}),
        )
        .unwrap_err();
        assert_eq!(field_of(e), "400 request.width");
        let slides: Vec<Value> = (0..101)
            .map(|_| json!({"title": "t", "text": "x"}))
            .collect();
        let e =
            check_generic(TaskType::Video, json!({"title": "v", "slides": slides})).unwrap_err();
        assert_eq!(field_of(e), "400 request.slides");
        let e = check_generic(
            TaskType::VoiceGeneration,
            json!({"text": "x".repeat(20_001)}),
        )
        .unwrap_err();
        assert_eq!(field_of(e), "400 request.text");
    }

    #[test]
    fn unknown_fields_of_a_generic_request_are_named_under_request() {
        let e = check_generic(
            TaskType::Video,
            json!({"title": "v", "slides": [{"title": "a", "text": "b", "font": "x"}]}),
        )
        .unwrap_err();
        assert_eq!(field_of(e), "422 request.slides[0].font");
    }

    #[test]
    fn a_valid_request_is_stored_without_the_enqueue_options() {
        let (v, o) = typed(StoryRequest {
            prompt: "a fox".into(),
            length: Some(StoryLength::Short),
            audience: None,
            priority: Some(PriorityParam::High),
            run_at: None,
            delay_seconds: Some(5),
            webhook_url: None,
        })
        .unwrap();
        assert_eq!(v, json!({"prompt": "a fox", "length": "short"}));
        assert_eq!(o.delay_seconds, Some(5));
    }
}

//! The typed requests of DESIGN §9 as the API takes them: each is the catalog's request type
//! ([`taskfleet::catalog::requests`], where its limits are defined once), and a typed endpoint
//! takes the enqueue options (`priority`, `run_at`, `delay_seconds`, `webhook_url`) next to
//! the request's own fields. Unknown fields are refused (422, named with their path by
//! [`crate::extract`]); limits give 400 naming the field. A generic enqueue's `request` of a
//! catalog type is checked by the same types, so both ways in accept the same requests.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
pub use taskfleet::catalog::requests::{
    AnimatedLessonRequest, CourseVideoRequest, DocFormat, DocumentationRequest, ImageRequest,
    Lesson, QuizRequest, Slide, Step, StoryLength, StoryRequest, TypedRequest, VideoRequest,
    VoiceRequest,
};
use taskfleet::TaskType;

use crate::enqueue::{EnqueueOptions, PriorityParam};
use crate::error::AppError;
use crate::extract;

/// The fields a typed endpoint takes next to its request's own (they are not stored in it).
pub const OPTION_FIELDS: [&str; 4] = ["priority", "run_at", "delay_seconds", "webhook_url"];

/// A catalog request type with the type it belongs to.
pub trait CatalogRequest: TypedRequest + Serialize + DeserializeOwned {
    const TASK_TYPE: TaskType;
}

macro_rules! catalog_request {
    ($($req:ty => $t:expr),* $(,)?) => {
        $(impl CatalogRequest for $req {
            const TASK_TYPE: TaskType = $t;
        })*
    };
}

catalog_request! {
    VideoRequest => TaskType::Video,
    AnimatedLessonRequest => TaskType::AnimatedLesson,
    CourseVideoRequest => TaskType::CourseVideo,
    DocumentationRequest => TaskType::Documentation,
    QuizRequest => TaskType::Quiz,
    StoryRequest => TaskType::StoryGeneration,
    ImageRequest => TaskType::ImageGeneration,
    VoiceRequest => TaskType::VoiceGeneration,
}

/// The enqueue options as a typed endpoint's body carries them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionFields {
    #[serde(default)]
    priority: Option<PriorityParam>,
    #[serde(default)]
    run_at: Option<i64>,
    #[serde(default)]
    delay_seconds: Option<u64>,
    #[serde(default)]
    webhook_url: Option<String>,
}

/// A typed endpoint's body, split: the options out, the rest read as the type's request and
/// checked against its limits. Returns the request to store and the options.
pub fn typed_body<R: CatalogRequest>(body: Value) -> Result<(Value, EnqueueOptions), AppError> {
    let Value::Object(mut fields) = body else {
        return Err(AppError::invalid("body", "must be a JSON object"));
    };
    let mut options = Map::new();
    for name in OPTION_FIELDS {
        if let Some(v) = fields.remove(name) {
            options.insert(name.to_string(), v);
        }
    }
    let o: OptionFields = extract::from_value("", Value::Object(options))?;
    let request = checked::<R>("", Value::Object(fields))?;
    Ok((
        request,
        EnqueueOptions {
            priority: o.priority,
            run_at: o.run_at,
            delay_seconds: o.delay_seconds,
            webhook_url: o.webhook_url,
        },
    ))
}

/// Reads `value` as `R` (fields named under `prefix`) and checks its limits; the request is
/// stored as it was sent (the worker fills in defaults when it parses it).
fn checked<R: CatalogRequest>(prefix: &str, value: Value) -> Result<Value, AppError> {
    let r: R = extract::from_value(prefix, value.clone())?;
    r.validate().map_err(|e| {
        let field = if prefix.is_empty() {
            e.field
        } else {
            format!("{prefix}.{}", e.field)
        };
        AppError::invalid(field, e.message)
    })?;
    Ok(value)
}

/// Validates a generic enqueue's `request` for a catalog type as its typed endpoint would
/// (field paths under `request.`); returns it as it came.
pub fn check_generic(t: TaskType, request: Value) -> Result<Value, AppError> {
    if let Some(field) = request
        .as_object()
        .and_then(|o| OPTION_FIELDS.iter().find(|f| o.contains_key(**f)))
    {
        return Err(AppError::invalid(
            format!("request.{field}"),
            "priority, run_at, delay_seconds and webhook_url go next to `request`, not in it",
        ));
    }
    let check = match t {
        TaskType::Video => checked::<VideoRequest>,
        TaskType::AnimatedLesson => checked::<AnimatedLessonRequest>,
        TaskType::Documentation => checked::<DocumentationRequest>,
        TaskType::Quiz => checked::<QuizRequest>,
        TaskType::CourseVideo => checked::<CourseVideoRequest>,
        TaskType::StoryGeneration => checked::<StoryRequest>,
        TaskType::ImageGeneration => checked::<ImageRequest>,
        TaskType::VoiceGeneration => checked::<VoiceRequest>,
    };
    check("request", request)
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
    fn a_typed_body_is_stored_without_the_enqueue_options() {
        let (v, o) = typed_body::<StoryRequest>(
            json!({"prompt": "a fox", "length": "short", "priority": "high", "delay_seconds": 5}),
        )
        .unwrap();
        assert_eq!(v, json!({"prompt": "a fox", "length": "short"}));
        assert_eq!(
            (o.priority, o.delay_seconds),
            (Some(PriorityParam::High), Some(5))
        );
        let e = typed_body::<StoryRequest>(json!({"prompt": "a fox", "colour": 1})).unwrap_err();
        assert_eq!(field_of(e), "422 colour");
        let e =
            typed_body::<StoryRequest>(json!({"prompt": "a fox", "priority": "asap"})).unwrap_err();
        assert!(field_of(e).starts_with("400 priority"));
    }
}

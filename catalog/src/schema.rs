//! The limits of every request in its OpenAPI schema (feature `openapi`), read from the same
//! constants `validate()` checks against: the shapes come from `#[derive(ToSchema)]` on the
//! request types, and [`apply_limits`] writes each field's bounds into them, so a limit is
//! written once (utoipa's `#[schema(maximum = ..)]` takes only literals, which would be a
//! second copy of every number).

use std::ops::RangeInclusive;

use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr};

use crate::requests::*;

/// One field's bounds.
#[derive(Debug, Clone)]
pub enum Limit {
    /// A string of 1 to this many characters.
    Text(usize),
    /// A number in this range.
    Range(RangeInclusive<u32>),
    /// A list of 1 to this many items.
    Items(usize),
}

/// Every (schema, field, limit) of the requests.
pub fn limits() -> Vec<(&'static str, &'static str, Limit)> {
    use Limit::*;
    vec![
        ("StoryRequest", "prompt", Text(MAX_TEXT_CHARS)),
        ("StoryRequest", "audience", Text(MAX_TITLE_CHARS)),
        ("ImageRequest", "prompt", Text(MAX_TEXT_CHARS)),
        ("ImageRequest", "width", Range(IMAGE_SIDE)),
        ("ImageRequest", "height", Range(IMAGE_SIDE)),
        ("VoiceRequest", "text", Text(MAX_VOICE_CHARS)),
        ("VoiceRequest", "voice", Text(MAX_VOICE_NAME)),
        ("VoiceRequest", "speed", Range(SPEED_WPM)),
        ("DocumentationRequest", "title", Text(MAX_TITLE_CHARS)),
        ("DocumentationRequest", "source", Text(MAX_SOURCE_CHARS)),
        ("QuizRequest", "source_text", Text(MAX_SOURCE_CHARS)),
        ("QuizRequest", "num_questions", Range(QUESTIONS)),
        ("Slide", "title", Text(MAX_TITLE_CHARS)),
        ("Slide", "text", Text(MAX_TEXT_CHARS)),
        ("VideoRequest", "title", Text(MAX_TITLE_CHARS)),
        ("VideoRequest", "slides", Items(MAX_SLIDES)),
        ("VideoRequest", "voice", Text(MAX_VOICE_NAME)),
        ("Step", "text", Text(MAX_TEXT_CHARS)),
        ("AnimatedLessonRequest", "title", Text(MAX_TITLE_CHARS)),
        ("AnimatedLessonRequest", "steps", Items(MAX_SLIDES)),
        ("AnimatedLessonRequest", "voice", Text(MAX_VOICE_NAME)),
        ("Lesson", "title", Text(MAX_TITLE_CHARS)),
        ("Lesson", "slides", Items(MAX_SLIDES)),
        ("CourseVideoRequest", "title", Text(MAX_TITLE_CHARS)),
        ("CourseVideoRequest", "lessons", Items(MAX_LESSONS)),
        ("CourseVideoRequest", "voice", Text(MAX_VOICE_NAME)),
    ]
}

/// Writes the limits into the schemas of `doc` that have them (the request schemas and any
/// schema named like one); a missing schema or field is skipped.
pub fn apply_limits(doc: &mut OpenApi) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for (name, field, limit) in limits() {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) else {
            continue;
        };
        let Some(RefOr::T(prop)) = object.properties.get_mut(field) else {
            continue;
        };
        apply(prop, &limit);
    }
}

/// Writes one limit into a field's schema.
pub fn apply(prop: &mut Schema, limit: &Limit) {
    match (prop, limit) {
        (Schema::Object(o), Limit::Text(max)) => {
            o.min_length = Some(1);
            o.max_length = Some(*max);
        }
        (Schema::Object(o), Limit::Range(r)) => {
            o.minimum = Some((*r.start() as usize).into());
            o.maximum = Some((*r.end() as usize).into());
        }
        (Schema::Array(a), Limit::Items(max)) => {
            a.min_items = Some(1);
            a.max_items = Some(*max);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi as _;

    #[derive(utoipa::OpenApi)]
    #[openapi(components(schemas(ImageRequest, VideoRequest, Slide)))]
    struct Doc;

    #[test]
    fn the_schema_carries_the_limits_validate_checks() {
        let mut doc = Doc::openapi();
        apply_limits(&mut doc);
        let v = serde_json::to_value(&doc).unwrap();
        let s = &v["components"]["schemas"];
        assert_eq!(
            s["ImageRequest"]["properties"]["width"]["maximum"],
            *IMAGE_SIDE.end()
        );
        assert_eq!(
            s["ImageRequest"]["properties"]["width"]["minimum"],
            *IMAGE_SIDE.start()
        );
        assert_eq!(
            s["VideoRequest"]["properties"]["slides"]["maxItems"],
            MAX_SLIDES
        );
        assert_eq!(
            s["Slide"]["properties"]["text"]["maxLength"],
            MAX_TEXT_CHARS
        );
    }
}

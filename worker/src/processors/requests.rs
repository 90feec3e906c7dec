//! The typed request of each task type (DESIGN §9): serde shapes that refuse unknown fields,
//! and `validate()` that names the field a limit refuses. The API checks requests with these
//! before enqueueing; processors check them again, so a bad request that got in anyway fails
//! `Permanent` with the field named instead of doing half the work.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskfleet::TaskType;

/// Longest text of a voice request, in characters.
pub const MAX_VOICE_CHARS: usize = 20_000;
/// Longest text of one slide, lesson step or prompt, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Longest source of a documentation or quiz request, in characters.
pub const MAX_SOURCE_CHARS: usize = 200_000;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Smallest and largest image side, in pixels.
pub const IMAGE_SIDE: std::ops::RangeInclusive<u32> = 64..=2048;
/// Slowest and fastest speech, in words per minute.
pub const SPEED_WPM: std::ops::RangeInclusive<u32> = 80..=400;
/// Default speech rate, in words per minute (espeak-ng's own default).
pub const DEFAULT_SPEED_WPM: u32 = 175;
/// Default espeak-ng voice.
pub const DEFAULT_VOICE: &str = "en";
/// Slides of one video, steps of one lesson.
pub const MAX_SLIDES: usize = 100;
/// Lessons of one course.
pub const MAX_LESSONS: usize = 50;
/// Questions of one quiz.
pub const QUESTIONS: std::ops::RangeInclusive<u32> = 1..=50;
/// Default number of quiz questions.
pub const DEFAULT_QUESTIONS: u32 = 5;
/// Default image side when a request gives none.
pub const DEFAULT_IMAGE_SIDE: u32 = 512;

/// A request that a limit refuses: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// A typed request: its shape and its limits.
pub trait TypedRequest: DeserializeOwned + Serialize {
    fn validate(&self) -> Result<(), Invalid>;
}

/// Reads and validates a request. A shape error (unknown or missing field, wrong type) names
/// the field serde names; for an unknown field that is the field itself.
pub fn parse<T: TypedRequest>(request: Value) -> Result<T, Invalid> {
    let r: T = serde_path_to_error::deserialize(request).map_err(shape_error)?;
    r.validate()?;
    Ok(r)
}

/// Checks any type's request by name, for the API's generic enqueue.
pub fn validate_for(t: TaskType, request: &Value) -> Result<(), Invalid> {
    fn check<T: TypedRequest>(v: &Value) -> Result<(), Invalid> {
        parse::<T>(v.clone()).map(|_| ())
    }
    match t {
        TaskType::Video => check::<VideoRequest>(request),
        TaskType::AnimatedLesson => check::<AnimatedLessonRequest>(request),
        TaskType::Documentation => check::<DocumentationRequest>(request),
        TaskType::Quiz => check::<QuizRequest>(request),
        TaskType::CourseVideo => check::<CourseVideoRequest>(request),
        TaskType::StoryGeneration => check::<StoryRequest>(request),
        TaskType::ImageGeneration => check::<ImageRequest>(request),
        TaskType::VoiceGeneration => check::<VoiceRequest>(request),
    }
}

fn shape_error(e: serde_path_to_error::Error<serde_json::Error>) -> Invalid {
    let msg = e.inner().to_string();
    // The path of the value that did not fit (`slides[0].title`, `format`); for a missing field
    // it is the object that lacks it, and serde's message names the field itself.
    let path = e.path().to_string();
    let named = msg
        .split('`')
        .nth(1)
        .filter(|_| msg.starts_with("missing field") || msg.starts_with("unknown field"));
    let field = match (path.as_str(), named) {
        (".", Some(f)) => f.to_string(),
        (".", None) => "request".to_string(),
        (p, Some(f)) if msg.starts_with("missing field") => format!("{p}.{f}"),
        (p, _) => p.to_string(),
    };
    let message = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    Invalid::new(field, message)
}

fn text(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    let n = value.chars().count();
    if n > max {
        return Err(Invalid::new(
            field,
            format!("is {n} characters; at most {max} are allowed"),
        ));
    }
    Ok(())
}

fn optional_text(field: &str, value: &Option<String>, max: usize) -> Result<(), Invalid> {
    match value {
        Some(v) => text(field, v, max),
        None => Ok(()),
    }
}

fn voice(field: &str, v: &Option<String>) -> Result<(), Invalid> {
    if let Some(v) = v {
        let ok = !v.is_empty()
            && v.len() <= 64
            && !v.starts_with('-')
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_+/".contains(&b));
        if !ok {
            return Err(Invalid::new(
                field,
                "an espeak-ng voice name such as \"en\", \"en-us\" or \"de+f3\"",
            ));
        }
    }
    Ok(())
}

fn count(field: &str, n: usize, max: usize, what: &str) -> Result<(), Invalid> {
    if n == 0 {
        return Err(Invalid::new(field, format!("needs at least one {what}")));
    }
    if n > max {
        return Err(Invalid::new(
            field,
            format!("has {n} {what}s; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// `story_generation`: `{prompt, length?, audience?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoryRequest {
    pub prompt: String,
    #[serde(default)]
    pub length: StoryLength,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// How long a story is, in words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoryLength {
    Short,
    #[default]
    Medium,
    Long,
}

impl StoryLength {
    /// The word counts a story of this length has (inclusive).
    pub fn words(self) -> std::ops::RangeInclusive<usize> {
        match self {
            StoryLength::Short => 150..=350,
            StoryLength::Medium => 400..=800,
            StoryLength::Long => 900..=1600,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StoryLength::Short => "short",
            StoryLength::Medium => "medium",
            StoryLength::Long => "long",
        }
    }
}

impl TypedRequest for StoryRequest {
    fn validate(&self) -> Result<(), Invalid> {
        text("prompt", &self.prompt, MAX_TEXT_CHARS)?;
        optional_text("audience", &self.audience, MAX_TITLE_CHARS)
    }
}

/// `image_generation`: `{prompt, width?, height?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl ImageRequest {
    pub fn size(&self) -> (u32, u32) {
        (
            self.width.unwrap_or(DEFAULT_IMAGE_SIDE),
            self.height.unwrap_or(DEFAULT_IMAGE_SIDE),
        )
    }
}

impl TypedRequest for ImageRequest {
    fn validate(&self) -> Result<(), Invalid> {
        text("prompt", &self.prompt, MAX_TEXT_CHARS)?;
        for (field, v) in [("width", self.width), ("height", self.height)] {
            if let Some(v) = v {
                if !IMAGE_SIDE.contains(&v) {
                    return Err(Invalid::new(
                        field,
                        format!(
                            "{v} is out of range {}-{}",
                            IMAGE_SIDE.start(),
                            IMAGE_SIDE.end()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `voice_generation`: `{text, voice?, speed?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceRequest {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Words per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u32>,
}

impl TypedRequest for VoiceRequest {
    fn validate(&self) -> Result<(), Invalid> {
        text("text", &self.text, MAX_VOICE_CHARS)?;
        voice("voice", &self.voice)?;
        if let Some(s) = self.speed {
            if !SPEED_WPM.contains(&s) {
                return Err(Invalid::new(
                    "speed",
                    format!(
                        "{s} words/min is out of range {}-{}",
                        SPEED_WPM.start(),
                        SPEED_WPM.end()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `documentation`: `{title?, source, format?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub source: String,
    #[serde(default)]
    pub format: DocFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocFormat {
    #[default]
    Markdown,
    Html,
}

impl TypedRequest for DocumentationRequest {
    fn validate(&self) -> Result<(), Invalid> {
        optional_text("title", &self.title, MAX_TITLE_CHARS)?;
        text("source", &self.source, MAX_SOURCE_CHARS)
    }
}

/// `quiz`: `{source_text, num_questions?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuizRequest {
    pub source_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_questions: Option<u32>,
}

impl QuizRequest {
    pub fn questions(&self) -> usize {
        self.num_questions.unwrap_or(DEFAULT_QUESTIONS) as usize
    }
}

impl TypedRequest for QuizRequest {
    fn validate(&self) -> Result<(), Invalid> {
        text("source_text", &self.source_text, MAX_SOURCE_CHARS)?;
        if let Some(n) = self.num_questions {
            if !QUESTIONS.contains(&n) {
                return Err(Invalid::new(
                    "num_questions",
                    format!(
                        "{n} is out of range {}-{}",
                        QUESTIONS.start(),
                        QUESTIONS.end()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One slide of a video: a title, and the text that is shown and narrated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slide {
    pub title: String,
    pub text: String,
}

fn slides(field: &str, slides: &[Slide]) -> Result<(), Invalid> {
    count(field, slides.len(), MAX_SLIDES, "slide")?;
    for (i, s) in slides.iter().enumerate() {
        text(&format!("{field}[{i}].title"), &s.title, MAX_TITLE_CHARS)?;
        text(&format!("{field}[{i}].text"), &s.text, MAX_TEXT_CHARS)?;
    }
    Ok(())
}

/// `video`: `{title, slides: [{title, text}], voice?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    pub title: String,
    pub slides: Vec<Slide>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

impl TypedRequest for VideoRequest {
    fn validate(&self) -> Result<(), Invalid> {
        text("title", &self.title, MAX_TITLE_CHARS)?;
        slides("slides", &self.slides)?;
        voice("voice", &self.voice)
    }
}

/// One step of an animated lesson.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub text: String,
}

/// `animated_lesson`: `{title, steps: [{text}], voice?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnimatedLessonRequest {
    pub title: String,
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

impl TypedRequest for AnimatedLessonRequest {
    fn validate(&self) -> Result<(), Invalid> {
        text("title", &self.title, MAX_TITLE_CHARS)?;
        count("steps", self.steps.len(), MAX_SLIDES, "step")?;
        for (i, s) in self.steps.iter().enumerate() {
            text(&format!("steps[{i}].text"), &s.text, MAX_TEXT_CHARS)?;
        }
        voice("voice", &self.voice)
    }
}

/// One lesson of a course: it becomes one `video` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    pub title: String,
    pub slides: Vec<Slide>,
}

/// `course_video`: `{title, lessons: [{title, slides}], voice?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseVideoRequest {
    pub title: String,
    pub lessons: Vec<Lesson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

impl CourseVideoRequest {
    /// The `video` request of lesson `i`.
    pub fn lesson_video(&self, i: usize) -> VideoRequest {
        let l = &self.lessons[i];
        VideoRequest {
            title: l.title.clone(),
            slides: l.slides.clone(),
            voice: self.voice.clone(),
        }
    }
}

impl TypedRequest for CourseVideoRequest {
    fn validate(&self) -> Result<(), Invalid> {
        text("title", &self.title, MAX_TITLE_CHARS)?;
        count("lessons", self.lessons.len(), MAX_LESSONS, "lesson")?;
        for (i, l) in self.lessons.iter().enumerate() {
            text(&format!("lessons[{i}].title"), &l.title, MAX_TITLE_CHARS)?;
            slides(&format!("lessons[{i}].slides"), &l.slides)?;
        }
        voice("voice", &self.voice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of<T: TypedRequest + std::fmt::Debug>(v: Value) -> String {
        parse::<T>(v).unwrap_err().field
    }

    #[test]
    fn limits_name_the_field_they_refuse() {
        let long = "a".repeat(MAX_VOICE_CHARS + 1);
        assert_eq!(field_of::<VoiceRequest>(json!({"text": long})), "text");
        assert_eq!(
            field_of::<VoiceRequest>(json!({"text": "hi", "speed": 500})),
            "speed"
        );
        assert_eq!(
            field_of::<VoiceRequest>(json!({"text": "hi", "voice": "-x"})),
            "voice"
        );
        assert_eq!(
            field_of::<ImageRequest>(json!({"prompt": "p", "width": 10000})),
            "width"
        );
        assert_eq!(
            field_of::<ImageRequest>(json!({"prompt": "p", "height": 10})),
            "height"
        );
        assert_eq!(
            field_of::<VideoRequest>(json!({"title": "t", "slides": []})),
            "slides"
        );
        assert_eq!(
            field_of::<VideoRequest>(json!({"title": "t", "slides": [{"title": "a", "text": ""}]})),
            "slides[0].text"
        );
        assert_eq!(
            field_of::<QuizRequest>(json!({"source_text": "x", "num_questions": 0})),
            "num_questions"
        );
        assert_eq!(
            field_of::<CourseVideoRequest>(
                json!({"title": "c", "lessons": [{"title": "l", "slides": []}]})
            ),
            "lessons[0].slides"
        );
        assert_eq!(
            field_of::<AnimatedLessonRequest>(json!({"title": "t", "steps": []})),
            "steps"
        );
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        assert_eq!(
            field_of::<StoryRequest>(json!({"prompt": "p", "colour": 1})),
            "colour"
        );
        assert_eq!(
            field_of::<StoryRequest>(json!({"length": "short"})),
            "prompt"
        );
        assert_eq!(
            field_of::<VideoRequest>(
                json!({"title": "t", "slides": [{"title": "a", "text": "b", "x": 1}]})
            ),
            "slides[0].x"
        );
        assert_eq!(
            field_of::<VideoRequest>(json!({"title": "t", "slides": [{"title": "a"}]})),
            "slides[0].text"
        );
        assert_eq!(
            field_of::<DocumentationRequest>(json!({"source": "s", "format": "pdf"})),
            "format"
        );
        assert_eq!(
            field_of::<ImageRequest>(json!({"prompt": "p", "width": "wide"})),
            "width"
        );
    }

    #[test]
    fn defaults_fill_what_a_request_leaves_out() {
        let s: StoryRequest = parse(json!({"prompt": "a fox"})).unwrap();
        assert_eq!(s.length, StoryLength::Medium);
        let i: ImageRequest = parse(json!({"prompt": "a fox", "width": 64})).unwrap();
        assert_eq!(i.size(), (64, DEFAULT_IMAGE_SIDE));
        let q: QuizRequest = parse(json!({"source_text": "x"})).unwrap();
        assert_eq!(q.questions(), DEFAULT_QUESTIONS as usize);
        assert!(validate_for(TaskType::Documentation, &json!({"source": "fn a() {}"})).is_ok());
        assert!(validate_for(
            TaskType::Documentation,
            &json!({"source": "x", "format": "pdf"})
        )
        .is_err());
    }
}

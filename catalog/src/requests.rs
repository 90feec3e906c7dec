//! The typed request of each task type (DESIGN §9), its limits defined once: serde shapes that
//! refuse unknown fields, `validate()` that names the field a limit refuses, and (feature
//! `openapi`) their schema, whose limits [`crate::schema`] reads from the constants here. The
//! API and the library check requests with these before enqueueing; processors parse them and
//! check them again, so a bad request that got in anyway fails `Permanent` with the field
//! named instead of doing half the work.

use crate::task_type::TaskType;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
/// Longest espeak-ng voice name, in characters.
pub const MAX_VOICE_NAME: usize = 64;
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
/// Most characters one request may have spoken, all its slides, steps or lessons together
/// (about an hour of prose at the default speed). Per-field limits alone let a lesson ask for
/// 100 steps of 20,000 characters: tens of hours of audio.
pub const MAX_NARRATION_CHARS: usize = 60_000;
/// Longest speech one request may ask for, in seconds, estimated from its words at its speed
/// ([`speech_seconds`]): 20,000 characters of one-letter words at 80 words/min would be two
/// hours.
pub const MAX_NARRATION_SECONDS: u32 = 3_600;
/// The most speech a processor lets espeak-ng actually produce for one request, as a multiple
/// of [`MAX_NARRATION_SECONDS`]: the estimate is only an estimate (digits are read out, some
/// words are long), and this bounds the disk and time a request can take whatever it holds.
pub const SPOKEN_SECONDS_SLACK: u32 = 2;

/// Seconds of speech `text` takes at `wpm` words per minute, estimated: each whitespace-separated
/// word counts as one spoken word per six letters (at least one), plus one per digit (digits
/// are read out); words without a letter or digit are not spoken.
pub fn speech_seconds(text: &str, wpm: u32) -> f64 {
    let words: usize = text
        .split_whitespace()
        .map(|w| {
            let digits = w.chars().filter(char::is_ascii_digit).count();
            let letters = w.chars().filter(|c| c.is_alphabetic()).count();
            digits + letters.div_ceil(6)
        })
        .sum();
    words as f64 * 60.0 / f64::from(wpm.max(1))
}

/// What one request has spoken: characters and estimated seconds, added up over its parts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Narration {
    pub chars: usize,
    pub seconds: f64,
}

impl Narration {
    /// Adds one spoken text at `wpm`.
    pub fn add(&mut self, text: &str, wpm: u32) {
        self.chars += text.chars().count();
        self.seconds += speech_seconds(text, wpm);
    }

    /// Refuses a narration past [`MAX_NARRATION_CHARS`] or [`MAX_NARRATION_SECONDS`], naming
    /// `field` (the list or text it comes from).
    pub fn check(&self, field: &str, wpm: u32) -> Result<(), Invalid> {
        if self.chars > MAX_NARRATION_CHARS {
            return Err(Invalid::new(
                field,
                format!(
                    "narrates {} characters in all; at most {MAX_NARRATION_CHARS} are allowed",
                    self.chars
                ),
            ));
        }
        if self.seconds > f64::from(MAX_NARRATION_SECONDS) {
            return Err(Invalid::new(
                field,
                format!(
                    "is about {:.0} s of speech at {wpm} words/min; at most \
                     {MAX_NARRATION_SECONDS} s are allowed",
                    self.seconds.ceil()
                ),
            ));
        }
        Ok(())
    }
}

/// The narration of one slide, as a video speaks it: its title, then its text.
pub fn slide_narration(slide: &Slide) -> String {
    let title = slide.title.trim();
    if title.ends_with(['.', '!', '?', ':']) {
        format!("{title} {}", slide.text)
    } else {
        format!("{title}. {}", slide.text)
    }
}

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
            && v.len() <= MAX_VOICE_NAME
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StoryRequest {
    /// What the story is about.
    pub prompt: String,
    /// How long: short, medium (the default) or long.
    #[serde(default)]
    pub length: StoryLength,
    /// Who it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// How long a story is, in words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    /// What to draw.
    pub prompt: String,
    /// Pixels (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Pixels (default 512).
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VoiceRequest {
    /// What to say (also at most an hour of speech at its speed).
    pub text: String,
    /// An espeak-ng voice name such as `en`, `en-us` or `de+f3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Words per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u32>,
}

impl VoiceRequest {
    /// Words per minute: the request's, else the default.
    pub fn speed(&self) -> u32 {
        self.speed.unwrap_or(DEFAULT_SPEED_WPM)
    }
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
        let mut n = Narration::default();
        n.add(&self.text, self.speed());
        n.check("text", self.speed())
    }
}

/// `documentation`: `{title?, source, format?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DocumentationRequest {
    /// A title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The code (Rust, Python) or prose to document.
    pub source: String,
    /// markdown (the default) or html.
    #[serde(default)]
    pub format: DocFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuizRequest {
    /// The text to ask about.
    pub source_text: String,
    /// How many questions (default 5).
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Slide {
    /// Shown on the slide and spoken first.
    pub title: String,
    /// Shown and narrated.
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

/// The narration of slides, as videos speak them (at the default speed).
fn slides_narration(n: &mut Narration, slides: &[Slide]) {
    for s in slides {
        n.add(&slide_narration(s), DEFAULT_SPEED_WPM);
    }
}

/// `video`: `{title, slides: [{title, text}], voice?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    /// The video's title.
    pub title: String,
    /// The slides, in order (their narration together is at most an hour).
    pub slides: Vec<Slide>,
    /// An espeak-ng voice name such as `en`, `en-us` or `de+f3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

impl TypedRequest for VideoRequest {
    fn validate(&self) -> Result<(), Invalid> {
        text("title", &self.title, MAX_TITLE_CHARS)?;
        slides("slides", &self.slides)?;
        voice("voice", &self.voice)?;
        let mut n = Narration::default();
        slides_narration(&mut n, &self.slides);
        n.check("slides", DEFAULT_SPEED_WPM)
    }
}

/// One step of an animated lesson.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Shown and narrated.
    pub text: String,
}

/// `animated_lesson`: `{title, steps: [{text}], voice?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AnimatedLessonRequest {
    /// The lesson's title.
    pub title: String,
    /// The steps, in order (their narration together is at most an hour).
    pub steps: Vec<Step>,
    /// An espeak-ng voice name such as `en`, `en-us` or `de+f3`.
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
        voice("voice", &self.voice)?;
        let mut n = Narration::default();
        for s in &self.steps {
            n.add(&s.text, DEFAULT_SPEED_WPM);
        }
        n.check("steps", DEFAULT_SPEED_WPM)
    }
}

/// One lesson of a course: it becomes one `video` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    /// The lesson's title.
    pub title: String,
    /// Its slides, in order.
    pub slides: Vec<Slide>,
}

/// `course_video`: `{title, lessons: [{title, slides}], voice?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CourseVideoRequest {
    /// The course's title.
    pub title: String,
    /// The lessons, in order: each becomes one video (their narration together is at most
    /// an hour).
    pub lessons: Vec<Lesson>,
    /// An espeak-ng voice name such as `en`, `en-us` or `de+f3`.
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
        voice("voice", &self.voice)?;
        // The lessons are videos of their own, each under the limit anyway; the course as a
        // whole is held to the same total.
        let mut n = Narration::default();
        for l in &self.lessons {
            slides_narration(&mut n, &l.slides);
        }
        n.check("lessons", DEFAULT_SPEED_WPM)
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
    fn total_narration_is_capped_naming_the_list() {
        // 50 steps of 10,000 one-letter words: each within its own limit, 47 hours together.
        let words = vec!["a"; 10_000].join(" ");
        let steps: Vec<Value> = (0..50).map(|_| json!({ "text": words })).collect();
        let e = parse::<AnimatedLessonRequest>(json!({"title": "t", "steps": steps})).unwrap_err();
        assert_eq!(e.field, "steps");
        assert!(e.message.contains("at most 60000"), "{e}");
        let slides: Vec<Value> = (0..4)
            .map(|_| json!({"title": "t", "text": "x".repeat(20_000)}))
            .collect();
        let e = parse::<VideoRequest>(json!({"title": "t", "slides": slides.clone()})).unwrap_err();
        assert_eq!(e.field, "slides");
        let lessons: Vec<Value> = (0..2)
            .map(|_| json!({"title": "l", "slides": slides[..2]}))
            .collect();
        let e = parse::<CourseVideoRequest>(json!({"title": "c", "lessons": lessons})).unwrap_err();
        assert_eq!(e.field, "lessons");
        // Within the characters, past the seconds: slow speech of short words.
        let e = parse::<VoiceRequest>(json!({"text": words, "speed": 80})).unwrap_err();
        assert_eq!(e.field, "text");
        assert!(e.message.contains("at most 3600 s"), "{e}");
        assert!(parse::<VoiceRequest>(json!({"text": words, "speed": 175})).is_ok());
    }

    #[test]
    fn speech_is_estimated_from_words_letters_and_digits() {
        assert_eq!(speech_seconds("one two three", 60), 3.0);
        // Long words count once per six letters, digits once each, dashes not at all.
        assert_eq!(speech_seconds("photosynthesis — 1867", 60), 3.0 + 4.0);
        assert_eq!(speech_seconds("", 175), 0.0);
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

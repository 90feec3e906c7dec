//! The task types that come with taskfleet. The queue engine itself takes type names (any
//! string), so this closed catalog sits above it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the eight task types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    Video,
    AnimatedLesson,
    Documentation,
    Quiz,
    CourseVideo,
    StoryGeneration,
    ImageGeneration,
    VoiceGeneration,
}

impl TaskType {
    pub const ALL: [TaskType; 8] = [
        TaskType::Video,
        TaskType::AnimatedLesson,
        TaskType::Documentation,
        TaskType::Quiz,
        TaskType::CourseVideo,
        TaskType::StoryGeneration,
        TaskType::ImageGeneration,
        TaskType::VoiceGeneration,
    ];

    /// The name on the wire and in Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Video => "video",
            TaskType::AnimatedLesson => "animated_lesson",
            TaskType::Documentation => "documentation",
            TaskType::Quiz => "quiz",
            TaskType::CourseVideo => "course_video",
            TaskType::StoryGeneration => "story_generation",
            TaskType::ImageGeneration => "image_generation",
            TaskType::VoiceGeneration => "voice_generation",
        }
    }

    /// The API's typed endpoint of this type.
    pub fn endpoint(self) -> &'static str {
        match self {
            TaskType::Video => "/api/video/generate",
            TaskType::AnimatedLesson => "/api/animated-lesson/generate",
            TaskType::Documentation => "/api/documentation/generate",
            TaskType::Quiz => "/api/quiz/generate",
            TaskType::CourseVideo => "/api/course-video/generate",
            TaskType::StoryGeneration => "/api/story/generate",
            TaskType::ImageGeneration => "/api/image/generate",
            TaskType::VoiceGeneration => "/api/voice-generation/generate",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the catalog's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTaskType(pub String);

impl fmt::Display for UnknownTaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown task type {:?}", self.0)
    }
}

impl std::error::Error for UnknownTaskType {}

impl FromStr for TaskType {
    type Err = UnknownTaskType;
    fn from_str(s: &str) -> Result<Self, UnknownTaskType> {
        TaskType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTaskType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for t in TaskType::ALL {
            assert_eq!(t.as_str().parse::<TaskType>().unwrap(), t);
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::String(t.to_string())
            );
        }
        assert_eq!(
            "podcast".parse::<TaskType>(),
            Err(UnknownTaskType("podcast".into()))
        );
    }
}

//! How long one run of a request takes, in minutes, from its size alone (no processor is
//! built, nothing runs): the API's `estimated_completion_minutes` before a type has a measured
//! average. Rough by design; the measured average replaces it once tasks complete.

use serde_json::Value;

use crate::task_type::TaskType;

fn list_len(request: &Value, field: &str) -> usize {
    request
        .get(field)
        .and_then(Value::as_array)
        .map_or(1, Vec::len)
}

/// Minutes one run of `request` of type `t` takes, at least 1.
pub fn estimate_minutes(t: TaskType, request: &Value) -> u32 {
    let minutes = match t {
        TaskType::VoiceGeneration => {
            let chars = request
                .get("text")
                .and_then(Value::as_str)
                .map_or(0, str::len);
            1 + chars / 20_000
        }
        TaskType::Video => 1 + list_len(request, "slides") / 6,
        TaskType::AnimatedLesson => 1 + list_len(request, "steps") / 20,
        TaskType::CourseVideo => {
            let slides: usize = request
                .get("lessons")
                .and_then(Value::as_array)
                .map_or(1, |ls| ls.iter().map(|l| list_len(l, "slides")).sum());
            2 + slides / 6
        }
        TaskType::Documentation
        | TaskType::Quiz
        | TaskType::StoryGeneration
        | TaskType::ImageGeneration => 1,
    };
    u32::try_from(minutes).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bigger_requests_take_longer() {
        let slides = |n: usize| json!({"slides": vec![json!({"title": "t", "text": "x"}); n]});
        assert_eq!(estimate_minutes(TaskType::Video, &slides(1)), 1);
        assert_eq!(estimate_minutes(TaskType::Video, &slides(12)), 3);
        assert_eq!(
            estimate_minutes(
                TaskType::VoiceGeneration,
                &json!({"text": "x".repeat(40_000)})
            ),
            3
        );
        let course = json!({"lessons": [slides(6), slides(6)]});
        assert_eq!(estimate_minutes(TaskType::CourseVideo, &course), 4);
        assert_eq!(estimate_minutes(TaskType::Quiz, &json!({})), 1);
    }
}

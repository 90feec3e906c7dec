//! Each task type's configuration: the built-in defaults of DESIGN §8 and the settings file's
//! overrides (`[task_types.<type>]`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::requests::Invalid;
use crate::task_type::{TaskType, UnknownTaskType};

/// Default first retry delay ceiling; it doubles with each attempt.
pub const DEFAULT_BACKOFF_BASE_SECS: u64 = 10;
/// Default cap on a retry delay.
pub const DEFAULT_BACKOFF_MAX_SECS: u64 = 600;

/// A task type's settings (DESIGN §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConfig {
    pub max_attempts: u32,
    pub timeout_minutes: u64,
    /// 1-10; 9-10 urgent, 7-8 high, 4-6 normal, 1-3 low: the band a request without a
    /// priority gets.
    pub priority_weight: u8,
    pub description: String,
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// How many shards its queue is spread over; `None`: the deployment's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u16>,
}

impl TaskConfig {
    /// The built-in configuration of a type.
    pub fn default_for(t: TaskType) -> TaskConfig {
        let (max_attempts, timeout_minutes, priority_weight, description) = match t {
            TaskType::Video => (3, 60, 5, "Narrated video from slides"),
            TaskType::AnimatedLesson => (3, 30, 5, "Self-contained animated HTML lesson"),
            TaskType::Documentation => (3, 15, 4, "Reference documentation from source"),
            TaskType::Quiz => (3, 10, 6, "Quiz questions from a text"),
            TaskType::CourseVideo => (2, 180, 3, "Course video made of lesson videos"),
            TaskType::StoryGeneration => (3, 10, 5, "A story from a prompt"),
            TaskType::ImageGeneration => (3, 15, 6, "An image from a prompt"),
            TaskType::VoiceGeneration => (3, 15, 6, "Speech audio from text"),
        };
        TaskConfig {
            max_attempts,
            timeout_minutes,
            priority_weight,
            description: description.to_string(),
            backoff_base_secs: DEFAULT_BACKOFF_BASE_SECS,
            backoff_max_secs: DEFAULT_BACKOFF_MAX_SECS,
            shards: None,
        }
    }
}

/// A type's overrides in the settings file (`[task_types.video]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfigOverride {
    pub max_attempts: Option<u32>,
    pub timeout_minutes: Option<u64>,
    pub priority_weight: Option<u8>,
    pub description: Option<String>,
    pub backoff_base_secs: Option<u64>,
    pub backoff_max_secs: Option<u64>,
    pub shards: Option<u16>,
}

/// Why a catalog could not be built from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogError {
    UnknownTaskType(UnknownTaskType),
    Invalid(Invalid),
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogError::UnknownTaskType(e) => e.fmt(f),
            CatalogError::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for CatalogError {}

/// The closed catalog of task types with their (possibly overridden) configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    configs: BTreeMap<TaskType, TaskConfig>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            configs: TaskType::ALL
                .into_iter()
                .map(|t| (t, TaskConfig::default_for(t)))
                .collect(),
        }
    }
}

impl Catalog {
    /// The defaults with the settings' overrides applied; an override of an unknown type or
    /// out of range is an error.
    pub fn from_overrides(
        overrides: &HashMap<String, TaskConfigOverride>,
    ) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::default();
        for (name, o) in overrides {
            let t: TaskType = name.parse().map_err(CatalogError::UnknownTaskType)?;
            let c = catalog
                .configs
                .get_mut(&t)
                .expect("every type has a config");
            c.max_attempts = o.max_attempts.unwrap_or(c.max_attempts);
            c.timeout_minutes = o.timeout_minutes.unwrap_or(c.timeout_minutes);
            c.priority_weight = o.priority_weight.unwrap_or(c.priority_weight);
            if let Some(v) = &o.description {
                c.description = v.clone();
            }
            c.backoff_base_secs = o.backoff_base_secs.unwrap_or(c.backoff_base_secs);
            c.backoff_max_secs = o.backoff_max_secs.unwrap_or(c.backoff_max_secs);
            c.shards = o.shards.or(c.shards);
            let bad = |f: &str, m: &str| {
                CatalogError::Invalid(Invalid::new(format!("task_types.{name}.{f}"), m))
            };
            if !(1..=100).contains(&c.max_attempts) {
                return Err(bad("max_attempts", "must be 1-100"));
            }
            if !(1..=10).contains(&c.priority_weight) {
                return Err(bad("priority_weight", "must be 1-10"));
            }
            if c.timeout_minutes == 0 {
                return Err(bad("timeout_minutes", "must be at least 1"));
            }
            if c.shards.is_some_and(|n| !(1..=1024).contains(&n)) {
                return Err(bad("shards", "must be 1-1024"));
            }
        }
        Ok(catalog)
    }

    pub fn get(&self, t: TaskType) -> &TaskConfig {
        &self.configs[&t]
    }

    pub fn iter(&self) -> impl Iterator<Item = (TaskType, &TaskConfig)> {
        self.configs.iter().map(|(t, c)| (*t, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_has_the_documented_defaults() {
        let c = Catalog::default();
        let row = |t| {
            let c = c.get(t);
            (c.max_attempts, c.timeout_minutes, c.priority_weight)
        };
        assert_eq!(row(TaskType::Video), (3, 60, 5));
        assert_eq!(row(TaskType::AnimatedLesson), (3, 30, 5));
        assert_eq!(row(TaskType::Documentation), (3, 15, 4));
        assert_eq!(row(TaskType::Quiz), (3, 10, 6));
        assert_eq!(row(TaskType::CourseVideo), (2, 180, 3));
        assert_eq!(row(TaskType::StoryGeneration), (3, 10, 5));
        assert_eq!(row(TaskType::ImageGeneration), (3, 15, 6));
        assert_eq!(row(TaskType::VoiceGeneration), (3, 15, 6));
    }

    #[test]
    fn overrides_of_unknown_types_or_out_of_range_are_refused() {
        let bad_type = HashMap::from([("podcast".to_string(), TaskConfigOverride::default())]);
        assert!(matches!(
            Catalog::from_overrides(&bad_type),
            Err(CatalogError::UnknownTaskType(_))
        ));
        let bad_weight = HashMap::from([(
            "video".to_string(),
            TaskConfigOverride {
                priority_weight: Some(11),
                ..Default::default()
            },
        )]);
        match Catalog::from_overrides(&bad_weight) {
            Err(CatalogError::Invalid(e)) => {
                assert_eq!(e.field, "task_types.video.priority_weight")
            }
            other => panic!("{other:?}"),
        }
    }
}
